"""dcgan runtime: generate DCGAN images from an exported artifact. numpy + onnxruntime, no torch.

    from runtime import Generator
    with Generator.load("artifacts/dcgan") as gen:
        images = gen.generate(16, seed=0)  # uint8 (16, 64, 64, 3)
"""

from runtime.errors import ArtifactError, BackendUnavailable, DcganError
from runtime.generator import Generator

__all__ = ["ArtifactError", "BackendUnavailable", "DcganError", "Generator"]
