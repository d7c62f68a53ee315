"""The self-improvement loop: rounds of collect -> label -> refit verifier -> weight -> train -> evaluate/audit, with guards,
resume and a report. Orchestrates the stage packages; no stage imports this package."""
