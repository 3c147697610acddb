# /boot.py on the board (written there by the image builder; firmware/fs_boot.py in the repo).
# It only decides where the agent's code is: the ROMFS partition (/rom, mounted by MicroPython
# before boot.py runs, when the firmware has one) or the same .mpy files copied to /lib. Each
# holds image.json with the build id; the copy whose id matches /image.json is used, so a stale
# ROMFS or a stale /lib from an earlier flash is never run. Nothing else happens here: a
# failure in boot.py leaves a board without its program, so the work is in firmware/main.
import sys


def _code_root():
    import json

    def build(path):
        try:
            with open(path) as f:
                return json.load(f).get("build")
        except (OSError, ValueError, AttributeError):
            return None

    want = build("/image.json")
    for root in ("/rom", "/lib"):
        if want is not None and build(root + "/image.json") == want:
            return root
    return None


CODE = _code_root()
if CODE is None:
    print("site-agent: no code matching /image.json in /rom or /lib; flash the image again")
else:
    sys.path[:] = [CODE] + [p for p in sys.path if p not in ("/rom", "/rom/lib", "/lib", CODE)]
del _code_root
