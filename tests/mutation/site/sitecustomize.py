"""Lets a subprocess started by a test run the mutant under test (``mutmut run`` with this folder on PYTHONPATH).

mutmut activates a mutant in the test process only; tests that start ``python -m edgeface ...`` get the
mutated package too when ``mutants/`` is on PYTHONPATH, and the mutant's name in ``MUTANT_UNDER_TEST``. During
mutmut's own phases (stats collection, listing tests) that variable holds a phase name, which makes the
mutated code call back into mutmut's configuration, unreadable from the subprocess's folder: the subprocess
runs the original code then.
"""

import os

if os.environ.get("MUTANT_UNDER_TEST") in ("stats", "list_all_tests", "mutant_generation"):
    os.environ["MUTANT_UNDER_TEST"] = ""
