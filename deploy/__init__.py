"""Deployment assets for running embedserve on a Ray cluster (KubeRay), and the tools that keep
them in sync with the application builder. Not installed with the package: run from the repo."""
