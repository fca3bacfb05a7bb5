"""Complaints about collection: opened from an agency event, the lender's complaint channel or ops, with a deadline, an owner, an outcome and, when needed, a hold on the case."""

__all__: list[str] = []
