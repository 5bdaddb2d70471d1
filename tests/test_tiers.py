"""The suite's tiers: a test that starts a Python process must carry the `process` marker (tests/conftest.py),
so that `make test-fast` (-m "not process and ...") never waits on one."""
import subprocess
import sys

import pytest

from conftest import _python_needs_process_marker


class Unmarked:
    nodeid = "tests/test_x.py::test_y"

    def get_closest_marker(self, name):
        return None


def test_an_unmarked_test_that_starts_python_fails_and_other_programs_run():
    with _python_needs_process_marker(Unmarked()):
        for argv in ([sys.executable, "-c", "pass"], ["python3", "launch.py"], "python analyze.py results",
                     [sys.executable, "-m", "torch.distributed.run", "--standalone", "launch.py"]):
            with pytest.raises(pytest.fail.Exception, match=r"test_y starts a Python process .* `process` marker"):
                subprocess.run(argv)
        assert subprocess.run(["git", "--version"], capture_output=True).returncode == 0  # bench.env's git: allowed
