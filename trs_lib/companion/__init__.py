"""The companion's own machinery: the grid of the paper's tables, the driver that runs it (in
this process or on Slurm), the tables, claims and pages built from the records, the model zoo.

It depends on the library (``trs_lib``'s other modules) and never the other way round
(``tests/test_project.py`` checks the direction).
"""
