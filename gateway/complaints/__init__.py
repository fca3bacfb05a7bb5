"""Complaints about collection: opened from an agency's ``complaint.received``, the lender's
complaint channel (a CSV import or its webhook) or ops, each with a deadline, an owner, an
outcome and, when needed, a hold on the case; counted per agency for the scorecard and the
annual evaluation, and reported monthly to the regulator and the consumer-protection team.

``states`` is the pure core (the state table, deadlines, who held the case); ``lender_channel``
reads the lender's rows; ``store`` opens, reads and counts complaints in a transaction;
``service`` is the actions of ops and the lender's channel; ``report`` the monthly XLSX.
"""

from gateway.complaints.store import ComplaintTally, complaint_counts

__all__ = ["ComplaintTally", "complaint_counts"]
