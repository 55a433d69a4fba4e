"""Storage: the driver interface and its drivers, the key layout, the tag index, and the
services (blobs, uploads, manifests) that speak in registry terms over a driver."""
