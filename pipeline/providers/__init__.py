"""Cloud speech providers (Deepgram, ElevenLabs, OpenAI) and the failover chains around them.

Each provider implements one of the narrow interfaces in ``pipeline.engines``, so the
CallSession cannot tell a provider from an embedded engine; the chains make sure a provider
that errors, refuses or is late never leaves a caller in silence.
"""
