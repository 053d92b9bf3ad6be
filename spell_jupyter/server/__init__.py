"""The jupyter_server extension: REST and streaming handlers over the engine."""
