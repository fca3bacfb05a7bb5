"""The lender's money with its agencies: attribution of repayments, commission, monthly
statements."""
