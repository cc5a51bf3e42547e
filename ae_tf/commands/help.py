"""How `ae-tf ... --help` reads: defaults shown where they inform, descriptions wrapped, lists kept as written."""

from __future__ import annotations

import argparse
import textwrap


class HelpFormatter(argparse.HelpFormatter):
    """Adds "(default: X)" to a flag's help unless the flag is required, its default is empty (None,
    False) or the help already says it; wraps each paragraph of a description or epilog to the terminal,
    and keeps a paragraph that has indented lines (an example command, a table) exactly as written."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if ("%(default)" in text or "(default" in text or action.required or not action.option_strings
                or action.default is None or action.default is False or action.default == "" or action.default == argparse.SUPPRESS):
            return text
        return f"{text} (default: %(default)s)"

    def _split_lines(self, text: str, width: int) -> list[str]:
        """Flag help wrapped at spaces only, so no flag name is split at its hyphen."""
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        paragraphs = []
        for paragraph in textwrap.dedent(text).strip("\n").split("\n\n"):
            lines = paragraph.splitlines()
            if any(line.startswith(" ") for line in lines):
                paragraphs.append("\n".join(indent + line for line in lines))
            else:
                paragraphs.append(textwrap.fill(" ".join(lines), width, initial_indent=indent,
                                                subsequent_indent=indent, break_on_hyphens=False))
        return "\n\n".join(paragraphs)
