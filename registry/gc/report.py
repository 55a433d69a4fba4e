"""The report of one collection: what was examined and freed, how long it took, what it cost."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

#: The kinds of object a collection examines and frees, in report order.
KINDS = ("blobs", "manifests", "tags", "layer_links", "uploads", "staged", "multipart")


@dataclass(slots=True)
class Tally:
    """How many objects, and how many bytes where known."""

    count: int = 0
    bytes: int = 0

    def add(self, size: int = 0) -> None:
        self.count += 1
        self.bytes += size


@dataclass(slots=True)
class GcReport:
    """What one collection did, or with `dry_run` would have done.

    `removed` lists, in a dry run, the paths that would be deleted, in the
    order they would go (a real run keeps no list: it may delete millions);
    `requests` counts storage operations by name.
    """

    dry_run: bool
    examined: dict[str, Tally] = field(default_factory=lambda: {k: Tally() for k in KINDS})
    freed: dict[str, Tally] = field(default_factory=lambda: {k: Tally() for k in KINDS})
    removed: list[str] = field(default_factory=list)
    seconds: float = 0.0
    requests: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    def to_text(self) -> str:
        verb = "would free" if self.dry_run else "freed"
        lines = [f"{'kind':<12} {'examined':>10} {'bytes':>14} {verb:>10} {'bytes':>14}"]
        for kind in KINDS:
            seen, gone = self.examined[kind], self.freed[kind]
            lines.append(
                f"{kind:<12} {seen.count:>10} {seen.bytes:>14} {gone.count:>10} {gone.bytes:>14}"
            )
        total = sum(self.requests.values())
        detail = ", ".join(f"{op} {n}" for op, n in sorted(self.requests.items()))
        lines.append(f"took {self.seconds:.1f} s, {total} storage requests ({detail})")
        if self.dry_run:
            lines.append("dry run: nothing was deleted; would delete:")
            lines.extend(f"  {path}" for path in self.removed)
        return "\n".join(lines)
