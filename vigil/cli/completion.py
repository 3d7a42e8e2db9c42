"""`vigil completion bash|zsh`: a shell completion script made from the parser itself, so it offers every
command, subcommand, option and choice the installed `vigil` has, and file names elsewhere.

zsh runs the same function through its bash compatibility layer (``bashcompinit``).
"""

from __future__ import annotations

import argparse
import shlex

SHELLS = ("bash", "zsh")


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _tables(
    parser: argparse.ArgumentParser, path: str = ""
) -> tuple[dict[str, str], dict[str, str], set[str]]:
    """Per command path ("", "sensor", "sensor read"): its options; per option with choices: the choices;
    and every option that takes a value (its value is not a command)."""
    words: dict[str, str] = {}
    choices: dict[str, str] = {}
    valued: set[str] = set()
    offered: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            continue
        offered += [o for o in action.option_strings if o.startswith("--")]
        if action.option_strings and action.nargs != 0:
            valued.update(action.option_strings)
            if action.choices:
                for option in action.option_strings:
                    choices[option] = " ".join(str(c) for c in action.choices)
    words[path] = " ".join(offered)
    for name, sub in _subparsers(parser).items():
        w, c, v = _tables(sub, f"{path} {name}".strip())
        words.update(w)
        choices.update(c)
        valued |= v
    return words, choices, valued


def _case(table: dict[str, str], indent: str, variable: str) -> str:
    """bash ``case`` arms setting ``variable`` from ``table``'s key (an empty key matches the empty word)."""
    return "\n".join(
        f"{indent}{shlex.quote(key)}) {variable}={shlex.quote(value)} ;;" for key, value in table.items()
    )


def script(parser: argparse.ArgumentParser, shell: str) -> str:
    """The completion script for ``shell`` (bash or zsh), to be sourced."""
    if shell not in SHELLS:
        raise ValueError(f"unknown shell {shell!r}; expected one of {', '.join(SHELLS)}")
    words, choices, valued = _tables(parser)
    subcommands = {key: " ".join(_subparsers_at(parser, key)) for key in words}
    valued_words = " ".join(sorted(valued))
    subs_of_path = _case(subcommands, "        ", "subs")
    body = f"""# vigil shell completion ({shell}); load it with: source <(vigil completion {shell})
_vigil_subs() {{
    case "$path" in
{subs_of_path}
        *) subs="" ;;
    esac
}}
_vigil() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" prev="" path="" subs word words="" i skip=0
    [[ $COMP_CWORD -gt 0 ]] && prev="${{COMP_WORDS[COMP_CWORD-1]}}"
    # The command path so far ("sensor read"): words that are subcommands, skipping options and their values.
    for ((i = 1; i < COMP_CWORD; i++)); do
        word="${{COMP_WORDS[i]}}"
        if [[ $skip == 1 ]]; then skip=0; continue; fi
        case " {valued_words} " in *" $word "*) skip=1; continue ;; esac
        _vigil_subs
        case " $subs " in *" $word "*) path="${{path:+$path }}$word" ;; esac
    done
    case "$prev" in
{_case(choices, "        ", "words")}
        *)
            # An option's value without choices (a file, KEY=VALUE): leave it to the shell's file names.
            case " {valued_words} " in *" $prev "*) return 0 ;; esac
            if [[ $cur == -* ]]; then
                case "$path" in
{_case(words, "                    ", "words")}
                esac
            else
                # A subcommand where one may follow; otherwise nothing, and the shell offers file names.
                _vigil_subs
                words=$subs
            fi
            ;;
    esac
    COMPREPLY=($(compgen -W "$words" -- "$cur"))
}}
complete -o default -F _vigil vigil
"""
    if shell == "zsh":
        # bashcompinit needs the completion system (compinit), which an interactive ~/.zshrc usually loads.
        body = (
            "(( $+functions[compdef] )) || { autoload -U +X compinit && compinit -u }\n"
            "autoload -U +X bashcompinit && bashcompinit\n" + body
        )
    return body


def _subparsers_at(parser: argparse.ArgumentParser, path: str) -> list[str]:
    """The words that may follow the command path: its subcommands, or its positional choices."""
    for name in path.split():
        parser = _subparsers(parser)[name]
    positional = [
        str(choice)
        for action in parser._actions
        if not action.option_strings and action.choices and not isinstance(action, argparse._SubParsersAction)
        for choice in action.choices
    ]
    return list(_subparsers(parser)) + positional
