"""Live transcription: Asterisk AudioSocket → Vosk (in-process or vosk-server) → segments."""
