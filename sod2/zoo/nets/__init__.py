"""PyTorch definitions of the zoo's architectures; every module here imports torch.

Nothing outside `sod2.zoo.export` and the zoo entries' network factories imports this package, and
those import it lazily, so `sod2.zoo` itself works without torch.
"""
