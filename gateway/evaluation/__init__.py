"""The annual evaluation of each agency: register standing, compliance, performance against peers, curves and SLA, with the reviewer's decision recorded under four eyes."""

__all__: list[str] = []
