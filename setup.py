"""Ship the top-level templates/ and inventory/ folders inside the wheel as arpfix/_data/."""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).parent


class BuildWithData(build_py):
    def run(self) -> None:
        super().run()
        for folder in ("templates", "inventory"):
            for source in sorted((ROOT / folder).rglob("*")):
                if source.is_file() and "__pycache__" not in source.parts:
                    target = Path(self.build_lib) / "arpfix" / "_data" / source.relative_to(ROOT)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(source.read_bytes())


setup(cmdclass={"build_py": BuildWithData})
