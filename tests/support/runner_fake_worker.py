"""Stand-ins for the smoke child, to test how the parent survives a crash or a hang in native code."""

from __future__ import annotations

import json
import os
import sys
import time

if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as fh:
        mode = json.load(fh)["mode"]
    print(json.dumps({"stage": "load", "message": "pretending to load"}), flush=True)
    if mode == "abort":
        os.abort()  # what an assertion in ggml does
    elif mode == "hang":
        time.sleep(600)
    elif mode == "exit":
        print("Traceback: something broke", file=sys.stderr)
        sys.exit(3)
