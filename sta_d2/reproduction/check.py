"""Recompute the delta_m the paper prints from the metric values of the same rows."""
from typing import List, NamedTuple

from ..evaluation.multitask_gain import DELTA_M_CONVENTIONS, multi_task_gain
from .paper_tables import TABLES, PaperRow, PaperSection


class Recomputed(NamedTuple):
    table: int
    section: PaperSection
    row: PaperRow
    values: dict  # convention -> delta_m from the row's printed metric values

    @property
    def deviation(self) -> float:
        """|paper convention - printed|."""
        return abs(self.values["paper"] - self.row.delta_m)


def recompute_paper_delta_m() -> List[Recomputed]:
    """Every row of every table, its delta_m recomputed under each convention from the row's
    printed values and its section's printed baseline."""
    out = []
    for number, table in TABLES.items():
        for section in table.sections:
            baselines = section.baselines()
            for row in section.rows:
                values = {c: multi_task_gain(section.row_values(row), baselines, section.metrics, convention=c)
                          for c in DELTA_M_CONVENTIONS}
                out.append(Recomputed(number, section, row, values))
    return out


def check_report() -> str:
    """What ``tools/reproduce.py --check-paper`` prints: per table section, the largest deviation
    of the recomputed ``paper`` delta_m from the printed one, and every row of a section whose
    printed values follow no known convention, with what each convention gives."""
    lines = ["delta_m recomputed from each row's printed metrics under the 'paper' convention "
             "(mean over tasks of the signed raw differences), against the printed delta_m:"]
    rows = recompute_paper_delta_m()
    for number, table in TABLES.items():
        for section in table.sections:
            mine = [r for r in rows if r.table == number and r.section is section]
            worst = max(mine, key=lambda r: r.deviation)
            where = f"Table {number} ({section.dataset}, {', '.join(section.metrics)})"
            if section.printed_delta_m_fits:
                lines.append(f"  {where}: {len(mine)} rows, largest deviation {worst.deviation:.4f} "
                             f"({worst.row.method}: printed {worst.row.delta_m:+.2f}, recomputed "
                             f"{worst.values['paper']:+.4f})")
                continue
            lines.append(f"  {where}: does NOT fit: {section.note}; largest deviation "
                         f"{worst.deviation:.2f}. Per row, printed vs each convention:")
            for r in mine:
                computed = ", ".join(f"{c} {v:+.2f}" for c, v in r.values.items())
                lines.append(f"    {r.row.method}: printed {r.row.delta_m:+.2f}; {computed}")
    fitting = [r for r in rows if r.section.printed_delta_m_fits]
    lines.append(f"Largest deviation over the {len(fitting)} rows that fit: "
                 f"{max(r.deviation for r in fitting):.4f}")
    return "\n".join(lines)
