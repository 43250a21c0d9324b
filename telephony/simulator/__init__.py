"""PBX simulator: an asyncio TCP server speaking AMI exactly as the recorded Asterisk 22.5
sessions in ``shared/ami-traces`` do, with the recorded dialplan, queue ``12345``, traffic
generation and fault injection. Stands in for Asterisk in tests and the demo."""

from telephony.simulator.server import PbxSimulator

__all__ = ["PbxSimulator"]
