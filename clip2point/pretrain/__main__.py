"""``python -m clip2point.pretrain ARGS`` = ``clip2point pretrain ARGS``; what torchrun runs:

    torchrun --nproc_per_node N -m clip2point.pretrain --meshes DIR -o RUN_DIR ...
"""
import sys

from .cli import main

sys.exit(main())
