"""CLI commands of the evidence log: ``evidence verify|checkpoint|export|check-bundle``."""

import json
from pathlib import Path

import click

from gateway.cli.context import console, err_console, open_gateway, run_async


@click.group()
def evidence() -> None:
    """The tamper-evident log of every packet, receipt and inbound message, and the
    case bundles a third party can check offline."""


@evidence.command("verify")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
@run_async
async def evidence_verify(ctx: click.Context, as_json: bool) -> None:
    """Recompute the Merkle tree, check every checkpoint signature and every attested row.

    Exits 1 on any tampering, naming the leaf, checkpoint or row.
    """
    gateway = await open_gateway(ctx)
    try:
        report = await gateway.evidence.verify([gateway.note_verifier])
    finally:
        await gateway.aclose()
    problems = [str(p) for p in report.problems]
    if as_json:
        click.echo(
            json.dumps(
                {
                    "ok": report.ok,
                    "leaves": report.leaves_checked,
                    "checkpoints": report.checkpoints_checked,
                    "problems": problems,
                },
                indent=2,
            )
        )
    else:
        for p in problems[:50]:
            err_console.print(f"  [red]✗[/] {p}", highlight=False)
        verdict = (
            "[green]evidence log verifies[/]"
            if report.ok
            else "[red]evidence log does NOT verify[/]"
        )
        console.print(
            f"{verdict}: {report.leaves_checked} leaves, "
            f"{report.checkpoints_checked} checkpoints, {len(problems)} problems"
        )
    if not report.ok:
        ctx.exit(1)


@evidence.command("checkpoint")
@click.pass_context
@run_async
async def evidence_checkpoint(ctx: click.Context) -> None:
    """Sign a checkpoint over the current tree (if it grew) and print it."""
    from gateway.clock import to_datetime

    gateway = await open_gateway(ctx)
    try:
        row = await gateway.evidence.checkpoint(now=to_datetime(gateway.clock.now()))
    finally:
        await gateway.aclose()
    console.print(
        row.note if row is not None else "tree unchanged since the last checkpoint", highlight=False
    )


@evidence.command("export")
@click.argument("case_id")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write here (default evidence-<CASE_ID>.json in the current folder).",
)
@click.pass_context
@run_async
async def evidence_export(ctx: click.Context, case_id: str, out: Path | None) -> None:
    """Write CASE_ID's evidence bundle: every packet, receipt, inbound message, mail,
    remote file, recall, ops action and personal data reveal the log attests for the case,
    each with its inclusion proof in a freshly signed checkpoint and the bytes it attests
    (withheld where they also carry other cases). Anyone can check it offline with
    `evidence check-bundle`, trusting only the lender's note key."""
    from gateway.clock import to_datetime
    from gateway.evidence.bundle import export_case

    gateway = await open_gateway(ctx)
    try:
        bundle = await export_case(
            gateway.db,
            gateway.evidence,
            gateway.note_verifier,
            case_id,
            now=to_datetime(gateway.clock.now()),
        )
    finally:
        await gateway.aclose()
    target = out or Path(f"evidence-{case_id}.json")
    target.write_text(json.dumps(bundle, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    kinds: dict[str, int] = {}
    for entry in bundle["entries"]:
        kinds[entry["kind"]] = kinds.get(entry["kind"], 0) + 1
    console.print(
        f"wrote {target}: {len(bundle['entries'])} leaves {kinds} in a tree of "
        f"{bundle['checkpoint'].splitlines()[1]}; note key {bundle['verifier_key']}",
        highlight=False,
    )


@evidence.command("check-bundle")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--key",
    "keys",
    multiple=True,
    help="A trusted note key (<name>+<hash>+<base64>), or a file holding one. Without it the "
    "key inside the bundle is used, which proves integrity but not who signed.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def evidence_check_bundle(
    ctx: click.Context, file: Path, keys: tuple[str, ...], as_json: bool
) -> None:
    """Check an evidence bundle offline (no database, no configuration): the checkpoint's
    signature, every leaf's inclusion proof, every attached byte string against its leaf,
    and the signed manifest against the whole bundle (nothing stripped, relabelled or
    dropped). Exits 1 on any problem, malformed input included."""
    from gateway.errors import ConfigError
    from gateway.evidence.bundle import verify_bundle
    from gateway.evidence.signed_note import NoteVerifier

    try:
        bundle = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        err_console.print(f"{file}: not a JSON evidence bundle ({exc})", highlight=False)
        ctx.exit(1)
    texts = [Path(k).read_text(encoding="utf-8").strip() if Path(k).is_file() else k for k in keys]
    own = str(bundle.get("verifier_key")) if isinstance(bundle, dict) else ""
    try:
        trusted = [NoteVerifier.from_text(t) for t in texts or [own]]
    except ConfigError as exc:
        if keys:
            raise click.BadParameter(str(exc), param_hint="--key") from None
        err_console.print(f"{file}: the bundle's own key is unusable ({exc})", highlight=False)
        ctx.exit(1)
    report = verify_bundle(bundle, trusted)
    if as_json:
        click.echo(json.dumps({**report.as_dict(), "own_key": not keys}, indent=2))
    else:
        for problem in report.problems:
            err_console.print(f"  [red]✗[/] {problem}", highlight=False)
        verdict = "[green]bundle verifies[/]" if report.ok else "[red]bundle does NOT verify[/]"
        console.print(
            f"{verdict}: case {report.case_id}, {report.entries} leaves in a tree of "
            f"{report.tree_size} signed by {', '.join(report.signed_by) or 'nobody trusted'}; "
            f"{report.bytes_checked} attached byte strings match, {report.withheld} withheld",
            highlight=False,
        )
        if not keys:
            err_console.print(
                "note: checked against the key inside the bundle; pass --key with the "
                "lender's published key to know who signed it"
            )
    if not report.ok:
        ctx.exit(1)


COMMANDS: list[click.Command] = [evidence]

__all__ = ["COMMANDS"]
