"""Only what pyproject.toml cannot say: the wheel carries the shipped model (models/) and the
shipped configs (configs/) inside the package, as rnner/models/... and rnner/configs/..., so
that `pip install rnner` alone can tag text and train a shipped config by name. In a checkout
they stay at the repository root, where rnner finds them first (rnner.shipped)."""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SHIPPED = ("models", "configs")  # repository folders copied into the package


class BuildWithShipped(build_py):
    def run(self) -> None:
        super().run()
        root = Path(__file__).parent
        for folder in SHIPPED:
            for src in sorted((root / folder).rglob("*")):
                if src.is_file() and "__pycache__" not in src.parts:
                    dst = Path(self.build_lib) / "rnner" / src.relative_to(root)
                    self.mkpath(str(dst.parent))
                    self.copy_file(str(src), str(dst))


setup(cmdclass={"build_py": BuildWithShipped})
