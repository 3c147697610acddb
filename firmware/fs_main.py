# /main.py on the board (written there by the image builder; firmware/fs_main.py in the repo).
# Runs the agent; firmware.main.start() never returns on a board (it resets on a fatal error).
try:
    from firmware import main as _agent
except ImportError as e:
    print("site-agent: cannot start: %s (is the image complete? see boot.py's message)" % e)
else:
    _agent.start()
