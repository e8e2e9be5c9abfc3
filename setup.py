from setuptools import find_packages, setup

setup(
    name="openclaw",
    version="0.1.0",
    description="A proactive personal-assistant daemon on Twisted",
    python_requires=">=3.11",
    # Every openclaw package (a new one cannot be left out of a plain `pip install .`),
    # and twisted/plugins, which has no __init__.py: it is Twisted's plugin namespace.
    packages=[*find_packages(include=["openclaw", "openclaw.*"]), "twisted.plugins"],
    package_data={
        "openclaw": ["templates/*"],
        "openclaw.system": ["templates/*"],
        "openclaw.console": ["static/*"],
    },
    install_requires=[
        "twisted[tls]>=24.3",
        "autobahn>=24.4",
        "klein>=24.8",
        "treq>=24.9",
        "txredisapi>=1.4.10",
        "hiredis>=2.0",  # txredisapi parses replies with it when it imports (C, not Python)
        "prometheus-client>=0.20",
        "eliot>=1.15",
        "eliot-tree>=24.0",
        "zope.interface>=6",
        "pyyaml>=6",
        "orjson>=3.9",
        "psutil>=5.9",
        "croniter>=2.0",
        "tzdata",
    ],
    extras_require={
        "test": [
            "pytest>=8",
            "pytest-twisted>=1.14",
            "pytest-timeout>=2.3",
            "hypothesis>=6.100",
            # The console's browser tests drive Debian's chromium (no browser download).
            "playwright>=1.45",
        ],
    },
    entry_points={"console_scripts": ["openclaw = openclaw.cli:main"]},
)
