"""The on-sale over time as one PNG: fans on top, tickets below, one clock.

Seconds are counted from the on-sale (negative: the pre-queue). The title
carries the verdict so the picture alone says whether the run was sound.
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and in the crowd's machine
import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first


def draw_chart(report: dict, path: Path) -> Path:
    timeline = report["timeline"]
    on_sale = report["meta"]["on_sale_at"]
    x = [s["t"] - on_sale for s in timeline]
    tickets = report["tickets"]
    figure, (fans, stock) = plt.subplots(
        2, 1, figsize=(12.5, 7.5), sharex=True, gridspec_kw={"height_ratios": [1, 1.2]}
    )

    fans.plot(x, [s["waiting"] for s in timeline], label="fans waiting in line", color="tab:orange", linewidth=2)
    fans.plot(x, [s["admitted"] for s in timeline], label="fans admitted (total)", color="tab:blue", linewidth=2)
    fans.set_ylabel("fans")
    fans.legend(loc="upper left", bbox_to_anchor=(1.01, 1))  # outside: never over the lines
    fans.grid(alpha=0.3)

    sold = [s["sold"] for s in timeline]
    held = [s["held"] for s in timeline]
    stock.stackplot(
        x, sold, held, labels=["tickets sold", "tickets held (unpaid)"], colors=["tab:green", "gold"], alpha=0.85
    )
    stock.plot(x, [s["available"] for s in timeline], label="tickets available", color="tab:gray", linewidth=1.5)
    stock.axhline(tickets["capacity"], color="black", linestyle="--", linewidth=1, label="capacity")
    stock.set_ylabel("tickets")
    stock.set_xlabel("seconds since the sale opened")
    stock.legend(loc="upper left", bbox_to_anchor=(1.01, 1))
    stock.grid(alpha=0.3)

    for axes in (fans, stock):
        axes.axvline(0, color="tab:red", linewidth=1)
    sold_out = report["timing"]["sold_out_s"]
    if sold_out is not None:
        stock.axvline(sold_out, color="tab:green", linestyle=":", linewidth=1.5)
        stock.annotate(
            f"sold out {sold_out:.1f} s",
            (sold_out, tickets["capacity"]),
            textcoords="offset points",
            xytext=(4, -14),
            fontsize=9,
        )
    fans.annotate("sale opens", (0, 0), textcoords="offset points", xytext=(4, 4), fontsize=9, color="tab:red")

    verdict = report["invariants"]["result"]
    errors = report["errors"]
    figure.suptitle(
        f"{report['fans']['total']} fans, {tickets['capacity']} tickets: {tickets['sold']} sold, "
        f"{tickets['bookings']['expired']['bookings']} holds expired, "
        f"{tickets['bookings']['refunded']['bookings']} refunded, {errors['server_5xx']} server 5xx  |  "
        f"invariants {verdict}",
        fontsize=12,
        fontweight="bold",
        # Green only for a clean run: sound counts and no server errors.
        color="darkred" if verdict != "PASS" else "darkorange" if errors["server_5xx"] else "darkgreen",
    )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
