"""Names the CLI offers as choices, importable without torch (its argument parsing and --help)."""

# The implemented methods.
METHODS = ("sano", "spr", "ppii", "cddpm", "dia")
# What the networks run in at inference; "auto" is bf16 on CUDA and fp32 on the CPU.
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
