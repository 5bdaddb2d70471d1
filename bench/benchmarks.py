"""Benchmarks and their tasks in the order tables show them (torch-free, no data access)."""

BENCHMARK_TASKS: dict[str, list[str]] = {
    # natural, specialized, structured: the VTAB-1k group order
    "mini": ["mini/digits", "mini/textures", "mini/dspr_loc", "mini/dspr_ori", "mini/count"],
}
