"""``netwatch profiles [show NAME]``: the WiFi profiles netwatch knows, and what each one reads.

Lists the shipped profiles (config/profiles) and a site's own (``--dir``, or the ``profile_dir``
settings of a config given with ``-c``); a site profile with a shipped profile's name replaces
it. Exit status: 0 listed, 1 a profile file is broken (every problem printed as
``file:line: key: message``) or the profile is unknown, 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    """Add ``netwatch profiles``."""
    profiles = subparsers.add_parser(
        "profiles",
        help="list the WiFi profiles (vendor MIB -> radios, clients, load) or show one",
        description="WiFi profiles map a vendor MIB's columns onto the wifi and wifi_radio measurements.\n"
        "A device's wifi check picks one with wifi.profile.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # The same options after ACTION; SUPPRESS keeps them from resetting what came before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dir", action="append", type=Path, default=argparse.SUPPRESS, help="site profiles")
    common.add_argument("-c", "--config", type=Path, default=argparse.SUPPRESS, help="a config's profile_dir")
    profiles.add_argument("--dir", action="append", type=Path, default=[], help="a directory of site profiles")
    profiles.add_argument("-c", "--config", type=Path, help="also the profile_dir settings of this config")
    profiles.add_argument("--json", action="store_true", help="print JSON")
    actions = profiles.add_subparsers(dest="profiles_action", metavar="ACTION")
    show = actions.add_parser("show", parents=[common], help="every column a profile reads and what it becomes")
    show.add_argument("name")
    profiles.set_defaults(handler=run)


def _dirs(args: argparse.Namespace) -> list[Path | None] | None:
    """The site directories to look in (None: the shipped profiles only); None on a config error."""
    dirs: list[Path | None] = list(dict.fromkeys(args.dir))
    if args.config is not None:
        from netwatch.config import ConfigError, load_config

        try:
            loaded = load_config(args.config)
        except ConfigError as exc:
            for issue in exc.issues:
                print(issue, file=sys.stderr)
            return None
        for device in loaded.inventory.devices.values():
            for spec in device.checks:
                found = getattr(spec.config, "profile_dir", None)
                if found is not None and Path(found) not in dirs:
                    dirs.append(Path(found))
    return dirs or [None]


def run(args: argparse.Namespace) -> int:
    """List profiles, or show one; see the module docstring for the exit status."""
    from netwatch.probes.wifiprofile import Catalog, ProfileError, catalog, describe

    dirs = _dirs(args)
    if dirs is None:
        return 1
    for directory in dirs:
        if directory is not None and not directory.is_dir():
            print(f"netwatch profiles: {directory} is not a directory", file=sys.stderr)
            return 1
    catalogs: list[Catalog] = [catalog(d) for d in dirs]
    if args.profiles_action == "show":
        for cat in catalogs:
            try:
                profile = cat.get(args.name)
            except ProfileError as exc:
                if args.name in cat.broken or cat is catalogs[-1]:
                    for issue in exc.issues:
                        print(issue, file=sys.stderr)
                    return 1
                continue
            print("\n".join(describe(profile)))
            return 0
        return 1
    merged = Catalog()
    for cat in catalogs:
        merged.profiles.update(cat.profiles)
        merged.broken.update({k: v for k, v in cat.broken.items() if k not in merged.profiles})
    names = sorted({*merged.profiles, *merged.broken})
    if args.json:
        rows = [
            {
                "name": p.name,
                "vendor": p.spec.vendor,
                "mib": p.spec.mib,
                "revision": p.spec.revision,
                "controller": p.spec.controller is not None,
                "fields": p.fields(),
                "file": str(p.path),
            }
            for p in (merged.profiles[n] for n in names if n in merged.profiles)
        ]
        print(json.dumps(rows, indent=2))
    else:
        table = [("NAME", "VENDOR", "MIB", "READS")]
        for name in names:
            found = merged.profiles.get(name)
            if found is None:
                table.append((name, "-", "-", "BROKEN (see below)"))
                continue
            reads = ", ".join(f for f in found.fields() if f not in ("radio", "band"))
            if found.spec.controller is not None:
                reads += " (via a controller)"
            table.append((name, found.spec.vendor, found.spec.mib, reads))
        widths = [max(len(row[i]) for row in table) for i in range(3)]
        for row in table:
            print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:3])) + "  " + row[3])
    for issues in merged.broken.values():
        for issue in issues:
            print(issue, file=sys.stderr)
    return 1 if merged.broken else 0
