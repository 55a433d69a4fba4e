"""The registry's services, speaking in registry terms over one storage driver:
blobs, uploads, manifests and tags, the index that caches what storage holds,
and the purge of abandoned uploads. `Registry` bundles them.
"""
