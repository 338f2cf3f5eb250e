"""Figures, targets and the printed table.

A Figure is one row: a value per system ("wharf", "distribution", "nginx"),
the ratios Wharf / each other system, and optionally a target from issue 5
(or 4) with its verdict, PASS or MISS. A system with an error in a row (a
failed request, a wrong body, a tool that broke) has no value there: its cell
is ERR, it has no ratio, and the row's verdict is FAIL, target or not. A MISS
does not fail the run; an error does (see verdict()).
"""

SYSTEMS = ("wharf", "distribution", "nginx")
COLUMN = {"wharf": "Wharf", "distribution": "Distribution", "nginx": "nginx"}


class Target:
    """text: as printed; check(values) -> bool, or None if it cannot be decided."""

    def __init__(self, text, check):
        self.text = text
        self.check = check


def _get(values, *keys):
    v = [values.get(k) for k in keys]
    return None if any(x is None for x in v) else v


def ratio_at_least(ref, k):
    def check(values):
        v = _get(values, "wharf", ref)
        return None if v is None or not v[1] else v[0] / v[1] >= k
    return Target(">= %gx %s" % (k, ref), check)


def ratio_at_most(ref, k):
    def check(values):
        v = _get(values, "wharf", ref)
        return None if v is None or not v[1] else v[0] / v[1] <= k
    return Target("<= %gx %s" % (k, ref), check)


def at_most(bound, text):
    def check(values):
        v = values.get("wharf")
        return None if v is None else v <= bound
    return Target("<= " + text, check)


def at_least(bound, text):
    def check(values):
        v = values.get("wharf")
        return None if v is None else v >= bound
    return Target(">= " + text, check)


def all_of(*targets):
    def check(values):
        r = [t.check(values) for t in targets]
        return None if None in r else all(r)
    return Target(" and ".join(t.text for t in targets), check)


class Figure:
    def __init__(self, section, fid, label, unit, values, better="higher", target=None,
                 errors=None, detail=None, fmt=None):
        self.section = section
        self.id = fid
        self.label = label
        self.unit = unit
        self.errors = errors or {}
        # A figure measured with errors is no figure: its value is dropped.
        self.values = {k: v for k, v in values.items()
                       if v is not None and k not in self.errors}
        self.better = better
        self.target = target
        self.detail = detail or {}
        self.fmt = fmt

    def ratio(self, other):
        w, o = self.values.get("wharf"), self.values.get(other)
        if w is None or not o:
            return None
        return w / o

    def verdict(self):
        if self.errors:
            return "FAIL"
        if not self.target:
            return None
        ok = self.target.check(self.values)
        return None if ok is None else ("PASS" if ok else "MISS")

    def to_json(self):
        out = {"section": self.section, "id": self.id, "label": self.label, "unit": self.unit,
               "better": self.better, "values": self.values,
               "ratios": {"wharf/" + k: self.ratio(k) for k in SYSTEMS[1:]
                          if self.ratio(k) is not None}}
        if self.target:
            out["target"] = self.target.text
        if self.target or self.errors:
            out["result"] = self.verdict() or "n/a"
        if self.errors:
            out["errors"] = self.errors
        if self.detail:
            out["detail"] = self.detail
        return out


def _num(v, fmt=None):
    if v is None:
        return "-"
    if fmt:
        return fmt % v
    a = abs(v)
    if a >= 1000:
        return "%.0f" % v
    if a >= 100:
        return "%.1f" % v
    if a >= 10:
        return "%.2f" % v
    return "%.3f" % v


def table(figures):
    """The figures as text, one section after another."""
    head = ("%-44s %-6s %11s %12s %11s %7s %7s  %s"
            % ("figure", "unit", "Wharf", "Distribution", "nginx", "W/D", "W/N", "target"))
    lines = [head, "-" * len(head)]
    section = None
    for f in figures:
        if f.section != section:
            section = f.section
            lines.append("[%s]" % section)
        cells = []
        for s in SYSTEMS:
            if s in f.values:
                cells.append(_num(f.values[s], f.fmt))
            elif s in f.errors:
                cells.append("ERR")
            else:
                cells.append("-")
        ratios = []
        for s in SYSTEMS[1:]:
            r = f.ratio(s)
            ratios.append("-" if r is None else ("%.2fx" % r if r < 100 else "%.0fx" % r))
        tgt = f.target.text + "  " if f.target else ""
        if f.target or f.errors:
            tgt += f.verdict() or "n/a"
        lines.append("%-44s %-6s %11s %12s %11s %7s %7s  %s"
                     % (f.label[:44], f.unit, cells[0], cells[1], cells[2], ratios[0],
                        ratios[1], tgt))
    return "\n".join(lines)


def errors_text(figures):
    """One line per error; a sub-row repeating its row's error is not repeated."""
    out, seen = [], set()
    for f in figures:
        for s, e in f.errors.items():
            if (s, e) not in seen:
                seen.add((s, e))
                out.append("%s [%s]: %s" % (f.label.strip(), COLUMN.get(s, s), e))
    return "\n".join(out)


def verdict(figures, broken=()):
    """(text, wharf_failed): FAIL when any row has an error or a phase of the
    bench broke, else PASS with the targets missed; wharf_failed when a
    Wharf cell is ERR or the bench broke (the exit status)."""
    bad = [f for f in figures if f.errors]
    wharf_bad = [f for f in bad if "wharf" in f.errors]
    if bad or broken:
        parts = ["%d row(s) with errors" % len(bad)] if bad else []
        if wharf_bad:
            parts.append("Wharf ERR in: " + ", ".join(
                f.label for f in wharf_bad if not f.label.startswith(" ")))
        if broken:
            parts.append("phases broke: " + ", ".join(broken))
        return "verdict: FAIL (%s)" % "; ".join(parts), bool(wharf_bad or broken)
    judged = [f for f in figures if f.verdict() in ("PASS", "MISS")]
    missed = [f.label.strip() for f in judged if f.verdict() == "MISS"]
    return ("verdict: PASS (no errors; targets met %d of %d%s)"
            % (len(judged) - len(missed), len(judged),
               "; MISS: " + ", ".join(missed) if missed else "")), False
