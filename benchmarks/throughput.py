"""Training and inference throughput side by side: the typical PyTorch loop, aelab's
engine, the GEMM roof and inference. Same as `aelab bench`; prints JSON last.

    python benchmarks/throughput.py [--quick] [--device cpu|cuda]
"""
from aelab.evaluation.bench import main

if __name__ == "__main__":
    main()
