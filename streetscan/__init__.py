"""StreetScan: city-management scene analytics for street cameras."""

# The one version: pyproject.toml reads it, events carry it (pipeline_version), `streetscan version`
# prints it, and the deploy manifests' image tags are its major.minor (tests/test_deploy.py).
__version__ = "0.4.0"
