"""Tooling shared by the tests (tests/), the benchmark harness (bench/) and the CI replica
scenario (deploy/ci/): throwaway PostgreSQL databases, free ports, clean environments and
process supervision. One copy, by role; none of it ships in the wheel or the image.

- `devkit.postgres`: a uniquely named database made from an admin URL, dropped at the end.
- `devkit.ports`: ports free on 127.0.0.1.
- `devkit.env`: this process's environment without the caller's S3GATE_*/AWS_* settings.
- `devkit.processes`: a process in its own session: started, waited for, stopped (SIGTERM, then
  SIGKILL, the whole group), its log's tail.

Importable from the repository root (pytest, `python -m bench.run`); deploy/ci/scenario.py,
run as a script, puts the root on sys.path itself.
"""
