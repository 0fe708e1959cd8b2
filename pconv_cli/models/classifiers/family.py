"""Registers the classifier families (on demand) and their training task (imports torch)."""

from pconv_cli.models.classifiers import network, task  # noqa: F401  (registration on import)
