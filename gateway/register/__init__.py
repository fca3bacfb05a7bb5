"""The agency register: who the lender has admitted, on what contract and qualifications, and whether allocation may place with them today."""

__all__: list[str] = []
