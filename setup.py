"""The connectors' distribution: source-mistral and destination-mistral.

mistral-emulator is packaged on its own (emulator/pyproject.toml), and tools/ and tests/ not at all,
so that installing the connectors, as their images do, carries none of them."""

from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


class BuildWithCredentialSpec(build_py):
    """Ships the top-level spec.yaml inside the shared package, so that `pip install .` (the docker
    image's path) carries the one credential block without a second copy in the tree."""

    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "mistral_connection" / "spec.yaml"
        target.parent.mkdir(parents=True, exist_ok=True)
        self.copy_file(str(HERE / "spec.yaml"), str(target))


setup(
    name="airbyte-mistral",
    version="0.2.0",
    description="Mistral AI for Airbyte pipelines: source-mistral and destination-mistral",
    long_description=(HERE / "README.md").read_text(encoding="utf-8") if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.11,<3.14",
    packages=find_packages(include=["mistral_connection*", "source_mistral*", "destination_mistral*"]),
    package_data={
        "source_mistral": ["manifest.yaml", "spec_fields.yaml"],
        "destination_mistral": ["*.yaml", "*.json"],
    },
    cmdclass={"build_py": BuildWithCredentialSpec},
    install_requires=[
        "airbyte-cdk>=7.39,<8",
        # protocol/ reads and writes messages through these dataclasses directly (the CDK depends on them too).
        "airbyte-protocol-models-dataclasses>=0.17,<1",
        "requests>=2.31",
        "pyyaml>=6",
        "jsonschema>=4.17",
        "jinja2>=3.1",
        "aiohttp>=3.9",
        "orjson>=3.9",
        "numpy>=1.26",
        "pyarrow>=15",
        # 1.1 is the first that sets the storage version of a new file (storage_compatibility_version).
        "duckdb>=1.1",
        # The PostgreSQL output; the binary package carries libpq, which the connector image lacks.
        "psycopg[binary]>=3.2",
        "mistral-common>=1.5",
        "sentencepiece>=0.2",
    ],
    extras_require={
        "tests": [
            "pytest>=8",
            "pytest-xdist>=3.5",
            "requests-mock>=1.11",
            "mistralai>=2",
            "openapi-core>=0.19",
            "hypothesis>=6.100",
            # A PostgreSQL server with pgvector in a wheel, which the PostgreSQL output's tests start.
            "pgserver>=0.1.4",
            # Pinned: another version may format differently, and the test command checks the format.
            "ruff==0.17.6",
        ],
        # The destination benchmark's peers and its chart.
        "bench": [
            "langchain-mistralai>=1.1",
            "matplotlib>=3.8",
        ],
    },
    entry_points={
        "console_scripts": [
            "source-mistral=source_mistral.run:run",
            "destination-mistral=destination_mistral.run:run",
        ],
    },
)
