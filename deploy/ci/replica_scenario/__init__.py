"""The parts of the replica scenario (deploy/ci/scenario.py runs them), by role:

- `common`: the scenario's constants, its error and its log line.
- `clients`: the users' loop through nginx and what the clients saw (`Tally`).
- `stack`: PostgreSQL, SeaweedFS, the replicas' containers and nginx.
- `drain`: SIGTERM to replica A with requests in flight on it.
- `traffic`: the timeline: users, SIGKILL and restart of B, the drain.
- `checks`: what the clients saw against nginx's log, the ledger and the bucket.

The throwaway database, the free ports and the process helpers are devkit's. devkit is not
installed (only app/ is, editable), so importing this package puts the checkout's root on
sys.path: scenario.py runs as a script, from any cwd.
"""

import sys
from pathlib import Path

_CHECKOUT = str(Path(__file__).resolve().parents[3])
if _CHECKOUT not in sys.path:
    sys.path.append(_CHECKOUT)
