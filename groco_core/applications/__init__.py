"""Equivariant reference architectures, shaped like `keras.applications`."""
