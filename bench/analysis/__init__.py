"""From records to results: loading (load), tables, few- and many-shot tables (shots), benchmark
definitions (benchmarks), published numbers (published), statistics (stats), figures (plots), the
HTML report (report) and analyze.py's body (cli).

Torch-free (tests/test_layout.py): analyzing thousands of records never loads the training stack.
"""
