"""The jobs' entry points and their Flink adapters.

In PyFlink's thread mode one interpreter, embedded in the TaskManager, serves every job and
attempt the JVM runs, while Flink ships each job's files to a directory of its own and
deletes it with the job: a package imported from one job's files keeps their (deleted) path,
and a module first imported later is not found. So, embedded, importing this package imports
every module of the project's shipped packages at once, while their files are there.
"""

import importlib
import pkgutil
import sys


def _import_everything() -> None:
    for name in ("pizzastream", "connectors", "jobs"):
        package = importlib.import_module(name)
        for module in pkgutil.walk_packages(package.__path__, f"{name}."):
            importlib.import_module(module.name)


if "pemja" in sys.modules:
    _import_everything()
