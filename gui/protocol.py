"""The lab's test protocol: the app asks for 1 3 5 7 2 four times, the person marks each answer.

Replaces the lab's 20 screenshots with per-digit statistics and a bar chart, saved together.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from pathlib import Path

from numnet.io import atomic_write, write_json

LAB_DIGITS = (1, 3, 5, 7, 2)
LAB_ROUNDS = 4


@dataclass
class ProtocolSession:
    sequence: list[int] = field(default_factory=lambda: list(LAB_DIGITS) * LAB_ROUNDS)
    answers: list[dict] = field(default_factory=list)  # {"asked", "predicted", "true"}

    @property
    def done(self) -> bool:
        return len(self.answers) >= len(self.sequence)

    @property
    def asked(self) -> int:
        return self.sequence[len(self.answers)]

    def record(self, predicted: int, true_digit: int | None = None) -> None:
        """true_digit None means the person marked the answer right."""
        if self.done:
            raise ValueError("the protocol is complete")
        true = predicted if true_digit is None else int(true_digit)
        self.answers.append({"asked": self.asked, "predicted": int(predicted), "true": true})

    def statistics(self) -> dict[str, dict[str, float]]:
        per_digit: dict[str, dict[str, float]] = {}
        for digit in sorted({a["true"] for a in self.answers} | set(self.sequence)):
            drawn = [a for a in self.answers if a["true"] == digit]
            right = sum(a["predicted"] == digit for a in drawn)
            per_digit[str(digit)] = {"drawn": len(drawn), "recognised": right,
                                     "accuracy": right / len(drawn) if drawn else 0.0}  # fmt: skip
        return per_digit

    def save(self, folder: Path, model_name: str) -> tuple[Path, Path]:
        """stats.json and chart.png in `folder`; returns their paths."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        folder.mkdir(parents=True, exist_ok=True)
        stats = self.statistics()
        record = {
            "model": model_name,
            "finished": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "answers": self.answers,
            "per_digit": stats,
            "overall_accuracy": sum(a["predicted"] == a["true"] for a in self.answers) / max(1, len(self.answers)),
        }
        stats_path, chart_path = folder / "stats.json", folder / "chart.png"
        write_json(stats_path, record)
        digits = list(stats)
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.bar(digits, [100 * stats[d]["accuracy"] for d in digits], color="#3a7")
        for i, d in enumerate(digits):
            ax.text(i, 100 * stats[d]["accuracy"] + 1, f"{stats[d]['recognised']}/{stats[d]['drawn']}", ha="center")
        ax.set_ylim(0, 110)
        ax.set_xlabel("digit drawn")
        ax.set_ylabel("recognised (%)")
        ax.set_title(f"test protocol, {model_name}: {record['overall_accuracy']:.0%} overall")
        fig.tight_layout()
        with atomic_write(chart_path) as f:
            fig.savefig(f, format="png", dpi=100)
        plt.close(fig)
        return stats_path, chart_path

    def summary(self) -> str:
        lines = [f"{d}: {s['recognised']}/{s['drawn']}" for d, s in self.statistics().items() if s["drawn"]]
        return "per digit (recognised/drawn): " + ", ".join(lines)
