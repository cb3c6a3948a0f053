"""No trigger template can crash, hang, exhaust memory or render what cannot be sent.

Every hostile template is a TemplateError naming its path, promptly (pytest's timeout
guards against a hang); ordinary templates render what Jinja's plain sandbox renders;
and `baton check` refuses each poison contract as `file:line`, with no traceback.
"""

from __future__ import annotations

import json
import re
import threading
from datetime import date
from pathlib import Path
from typing import Any

import jinja2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import Markup

from broker.contracts.check import check_contracts
from broker.core.template_limits import MAX_CHARS
from broker.core.templates import TemplateError, compile_template, unknown
from tests.conftest import Cluster

CONTEXT: dict[str, Any] = {
    "partition": "2026-11-23",
    "partition_start": "2026-11-23T00:00:00+00:00",
    "partition_end": "2026-11-24T00:00:00+00:00",
    "inputs": {
        "warehouse.orders": {
            "dataset": "warehouse.orders",
            "partition": "2026-11-23",
            "status": "success",
            "event_id": "o1",
            "metadata": {"row_count": 12, "tables": ["a", "b"]},
            "events": [{"event_id": "o1", "metadata": {"row_count": 12}}],
        }
    },
    "contract": "revenue_report",
    "trigger_id": "baton:revenue_report:2026-11-23:0",
    "generation": 0,
    "missing": ["warehouse.fx[2026-11-23]", "b"],
}  # fmt: skip


def render(source: str, **context: Any) -> Any:
    """`source` as the `body.rows` of a trigger, rendered as the dispatcher would."""
    rendered = compile_template({"body": {"rows": source}}).render({**CONTEXT, **context})
    return rendered["body"]["rows"]


def before(source: str) -> Any:
    """What Jinja's plain immutable sandbox renders (Baton's templates before budgets)."""
    env = ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False)
    stripped = source.strip()
    if re.match(r"^\{\{(?!.*\{\{).*\}\}$", stripped, re.DOTALL):
        return env.compile_expression(stripped[2:-2], undefined_to_none=False)(**CONTEXT)
    return env.from_string(source).render(CONTEXT)


DOUBLE_TEN_TIMES = "{% set a = 'x' * 1000 %}" + "".join(
    f"{{% set {b} = {a} ~ {a} %}}" for a, b in zip("abcdefghij", "bcdefghijk", strict=True)
)

HOSTILE = {
    "a power tower": "{{ 9 ** (9 ** 9) }}",
    "a huge repeat": "{{ 'a' * 10**9 }}",
    "a huge %-width": "{{ '%0999999999d' % 1 }}",
    "a %-width from the arguments": "{{ '%*d' % (10**9, 1) }}",
    "a huge center": "{{ 'x'|center(10**9) }}",
    "a million paragraphs of lipsum": "{{ lipsum(10**6) }}",
    "nested loops over big ranges": (
        "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}"
    ),
    "a macro with fan-out 2, 40 deep": (
        "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(40) }}"
    ),
    "a macro calling itself forever": "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
    "a recursive loop without end": "{% for x in [1] recursive %}{{ loop([1]) }}{% endfor %}",
    "doubling a string with ~": DOUBLE_TEN_TIMES + "{{ k|length }}",
    "doubling a string in a namespace": (
        "{% set ns = namespace(s='x') %}{% for i in range(40) %}"
        "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}"
    ),
    "a list holding the last one twice, 60 times over": (
        "{% set ns = namespace(a=[1]) %}{% for i in range(60) %}"
        "{% set ns.a = [ns.a, ns.a] %}{% endfor %}{{ ns.a|tojson|length }}"
    ),
    "a tuple key that doubles, hashed": (
        "{% set ns = namespace(t=(1,)) %}{% for i in range(60) %}"
        "{% set ns.t = (ns.t, ns.t) %}{% endfor %}{{ {ns.t: 1} }}"
    ),
    "nested loops over a long string": (
        "{% set s = 'x' * 900000 %}{% for a in s %}{% for b in s %}{% endfor %}{% endfor %}"
    ),
    "searching a long string in a loop": (
        "{% set s = 'x' * 900000 %}{% for i in range(100000) %}"
        "{% if 'zz' in s %}{% endif %}{% endfor %}"
    ),
    "comparing long lists in a loop": (
        "{% for i in range(100000) %}"
        "{% if (range(50000)|list) == (range(50000)|list) %}{% endif %}{% endfor %}"
    ),
    "a wide str.format field": "{{ '{:>999999999}'.format(1) }}",
    "a str.format repeating its field": "{{ ('{0}' * 10000).format('x' * 10000) }}",
    "a wide str.ljust": "{{ 'x'.ljust(10**9) }}",
    "a long int.to_bytes": "{{ (1).to_bytes(10**9, 'big') }}",
    "a str.replace that multiplies": "{{ ('x' * 100000).replace('x', 'y' * 100) }}",
    "a str.translate that multiplies": "{{ ('a' * 1000).translate({97: 'x' * 10000}) }}",
    "a str.expandtabs that multiplies": "{{ ('\\t' * 100000).expandtabs(100) }}",
    "a str.join with long glue": "{{ ('x' * 1000).join(range(10000)|map('string')) }}",
    "the join filter with long glue": "{{ range(10000)|map('string')|join('x' * 1000) }}",
    "batch padding": "{{ [1]|batch(10**9, 0)|list }}",
    "many slices": "{{ [1]|slice(10**9)|list }}",
    "rounding to a billion digits": "{{ 5|round(-10**9) }}",
    "a huge JSON indent": "{{ {'a': 1}|tojson(indent=10**9) }}",
    "a huge indent": "{{ ('x\\n' * 1000)|indent(10**6) }}",
    "wrapping with a long wrapstring": (
        "{{ ('a b ' * 100000)|wordwrap(1, wrapstring='x' * 100) }}"
    ),
    "the format filter with a huge width": "{{ '%0999999999d'|format(1) }}",
    "a test that formats a string": "{{ '%0999999999d' is odd }}",
    "urlize with a long target": "{{ ('x.co ' * 100000)|urlize(target='t' * 100) }}",
    "summing lists": "{{ range(3000)|map('string')|map('list')|sum(start=[]) }}",
    "multiplying big ints": "{{ (2 ** 4000) * (2 ** 4000) }}",
    "an int doubled past 4096 bits": (
        "{% set ns = namespace(n=2 ** 4095) %}{% for i in range(10) %}"
        "{% set ns.n = ns.n + ns.n %}{% endfor %}{{ ns.n }}"
    ),
    "a range of a million": "{{ range(10**6)|list }}",
    "output past the limit": "{% for i in range(2000) %}{{ 'x' * 1000 }}{% endfor %}",
    "parentheses past Python's parser": "{{ " + "(" * 500 + "1" + ")" * 500 + " }}",
    "a division by zero": "{{ 1 / 0 }}",
    "an include": "{% include 'other.txt' %}",
    "an unsafe attribute": "{{ ''.__class__ }}",
    "a syntax error": "{{ 1 + }}",
}


@pytest.mark.parametrize("source", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_template_is_a_template_error_naming_its_path(source: str) -> None:
    with pytest.raises(TemplateError) as caught:
        render(source)
    assert str(caught.value).startswith("body.rows: ")
    assert caught.value.path == ("body", "rows")


def test_a_budget_overrun_says_which_limit() -> None:
    with pytest.raises(TemplateError, match=r"takes more than 100,000 steps"):
        render(HOSTILE["a macro with fan-out 2, 40 deep"])
    with pytest.raises(TemplateError, match=r"nests calls deeper than 50"):
        render(HOSTILE["a macro calling itself forever"])
    with pytest.raises(TemplateError, match=r"integer of more than 4,096 bits"):
        render(HOSTILE["a power tower"])
    with pytest.raises(TemplateError, match=r"width of 1,000,000,000; at most 1,000,000"):
        render(HOSTILE["a huge center"])


NOT_JSON = {
    "{{ range(3) }}": "body.rows: renders to a range, which cannot be sent as JSON",
    "{{ lipsum }}": "body.rows: renders to a function, which cannot be sent as JSON",
    "{{ cycler(1) }}": "body.rows: renders to a Cycler, which cannot be sent as JSON",
    "{{ namespace() }}": "body.rows: renders to a Namespace, which cannot be sent as JSON",
    "{{ {}.items() }}": "body.rows: renders to a dict_items, which cannot be sent as JSON",
    "{{ self }}": "body.rows: renders to a TemplateReference, which cannot be sent as JSON",
    "{{ 'nan'|float }}": "body.rows: renders to nan, which cannot be sent as JSON",
    "{{ 'inf'|float }}": "body.rows: renders to inf, which cannot be sent as JSON",
    "{{ [1, range(2)] }}": "body.rows[1]: renders to a range, which cannot be sent as JSON",
    "{{ {'a': {'b': (-1) ** 0.5}} }}":
        "body.rows.a.b: renders to a complex, which cannot be sent as JSON",
    "{{ {1: 'a'} }}": "body.rows: has a key 1 that is not a string",
    "{{ [nope] }}": "body.rows: 'nope' is undefined",
    "{{ '\\ud800' }}": "body.rows: renders to text with a lone surrogate, which is no character",
    "x{{ '\\udfff' }}": "body.rows: renders to text with a lone surrogate, which is no character",
}  # fmt: skip


@pytest.mark.parametrize(("source", "message"), NOT_JSON.items(), ids=NOT_JSON.keys())
def test_a_value_that_is_not_json_is_refused_naming_its_path_and_type(
    source: str, message: str
) -> None:
    with pytest.raises(TemplateError) as caught:
        render(source)
    assert str(caught.value) == message


def test_a_markup_or_an_undefined_from_the_context_is_refused() -> None:
    with pytest.raises(TemplateError, match=r"^body.rows: renders to a Markup, which cannot"):
        render("{{ value }}", value=Markup("<b>"))
    with pytest.raises(TemplateError, match=r"^body.rows: 'value' is undefined"):
        render("{{ [value] }}", value=jinja2.StrictUndefined(name="value"))
    for source in ("{{ value }}", "{{ [value] }}"):  # a name alone, and within
        with pytest.raises(TemplateError, match=r"^body.rows: 'value' is undefined"):
            render(source, value=jinja2.StrictUndefined(name="value"))
    with pytest.raises(TemplateError, match=r"^body.rows: 'nowhere' is undefined"):
        render("{{ nowhere }}")  # not in the context: Jinja says so, as before


def test_a_literal_that_is_not_json_is_refused_when_compiled() -> None:
    for fields, message in [
        ({"body": {"day": date(2026, 11, 23)}}, "body.day: renders to a date"),
        ({"body": {"ratio": float("nan")}}, "body.ratio: renders to nan"),
        ({"body": {1: "a"}}, "body: has a key 1 that is not a string"),
        ({"note": "\ud800"}, "note: renders to text with a lone surrogate"),
    ]:
        with pytest.raises(TemplateError, match=f"^{re.escape(message)}"):
            compile_template(fields)


ORDINARY = [
    "{{ partition }}", "day {{ partition }}", "{{ generation + 1 }}", "{{ 2 ** 10 }}",
    "{{ '%05d' % generation }}", "{{ 'run-%s-%s' % (contract, partition) }}",
    "{{ '{}/{}'.format(contract, partition) }}", "{{ '{0:>12}|{1!r}'.format(contract, 1) }}",
    "{{ '%(c)s' % {'c': contract} }}", "{{ '%.2f' % 3.14159 }}", "{{ missing|join(', ') }}",
    "{{ missing|length }}", "{{ contract|upper }}", "{{ contract|replace('_', '-') }}",
    "{{ contract|center(20) }}", "{{ partition[:4] }}", "{{ 'abc'[::-1] }}", "{{ [1, 2, 3][1:] }}",
    "{{ partition.split('-') }}", "{{ inputs['warehouse.orders'].metadata.row_count }}",
    "{{ inputs['warehouse.orders'].metadata.get('row_count', 0) + 1 }}",
    "{{ inputs['warehouse.orders'].events|map(attribute='event_id')|list }}",
    "{{ inputs|tojson }}", "{{ inputs['warehouse.orders'].metadata|tojson(indent=2) }}",
    "{{ {'day': partition, 'n': generation} }}", "{{ [partition_start, partition_end] }}",
    "{% for e in inputs['warehouse.orders'].events %}{{ e.event_id }};{% endfor %}",
    "{% for k, v in inputs.items() %}{{ k }}={{ v.event_id }}{% endfor %}",
    "{% if partition == '2026-11-23' %}yes{% else %}no{% endif %}",
    "{% macro q(x) %}'{{ x }}'{% endmacro %}{{ q(partition) }}", "{{ range(3)|list }}",
    "{{ [3, 1, 2]|sort }}", "{{ contract ~ '-' ~ partition }}", "{{ trigger_id|truncate(10) }}",
    "{{ 3.5|round }}", "{{ 12345|filesizeformat }}", "{{ partition in missing }}",
    "{% set ns = namespace(n=0) %}{% for e in inputs['warehouse.orders'].events %}"
    "{% set ns.n = ns.n + e.metadata.row_count %}{% endfor %}{{ ns.n }}",
    "{{ missing|batch(1)|list }}", "{{ 'x\ny'|indent(2) }}", "{{ 'a b'|wordwrap(1) }}",
    "{{ missing|select('equalto', 'b')|list }}", "{{ missing|map('upper')|list }}",
    "{{ [[1], [2]]|sum(start=[]) }}", "{{ 'x' * 3 }}", "{{ [0] * 3 }}", "{{ 10 // 3 }}",
    "{{ generation is even }}", "{{ 4 is divisibleby 2 }}", "{{ {'b': 1, 'a': 2}|dictsort }}",
    "{{ dict(a=1, b=partition) }}", "{{ ', '.join(missing) }}", "{{ contract.ljust(20) }}",
    "{{ 'ab\tc'.expandtabs(4) }}", "{% filter upper %}a{{ partition }}{% endfilter %}",
    "{% set x %}{{ partition }}!{% endset %}{{ x }}", "{{ {'x': [1, {'y': none}]} }}",
    "{% for x in range(3) recursive %}{{ x }}{% endfor %}", "{{ 'x'|e }}", "plain text",
    "{% set c = cycler('a', 'b') %}{{ c.next() }}{{ c.next() }}", "{{ ('x' * 1000000)|length }}",
    # a name alone is looked up without Jinja: the same value, the same type
    "{{generation}}", "{{  inputs  }}", "{{ missing }}", "{{ true }}", "{{ None }}",
]  # fmt: skip


@pytest.mark.parametrize("source", ORDINARY)
def test_an_ordinary_template_renders_what_jinja_renders(source: str) -> None:
    rendered, expected = render(source), before(source)
    assert rendered == expected
    # Markup (|tojson, |e) comes back as the same text, plain.
    assert type(rendered) is (str if isinstance(expected, Markup) else type(expected))
    json.dumps(rendered, allow_nan=False, ensure_ascii=False).encode()


def test_a_value_of_exactly_the_limit_renders_and_one_more_character_does_not() -> None:
    assert render(f"{{{{ 'x' * {MAX_CHARS} }}}}") == "x" * MAX_CHARS
    with pytest.raises(TemplateError, match="about 1,000,001 characters"):
        render(f"{{{{ 'x' * {MAX_CHARS + 1} }}}}")


SEVENTY_THOUSAND_STEPS = "{% for i in range(70000) %}{% endfor %}ok"


def test_each_render_has_a_budget_of_its_own() -> None:
    template = compile_template({"a": SEVENTY_THOUSAND_STEPS})
    assert [template.render(CONTEXT) for _ in range(3)] == [{"a": "ok"}] * 3


def test_renders_in_parallel_threads_do_not_share_a_budget() -> None:
    template = compile_template({"a": SEVENTY_THOUSAND_STEPS})
    results: list[Any] = []
    threads = [
        threading.Thread(target=lambda: results.append(template.render(CONTEXT))) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [{"a": "ok"}] * 4


def test_a_sample_render_leaves_what_only_a_real_trigger_knows_as_unknown() -> None:
    template = compile_template(
        {"rows": "{{ inputs.a.metadata.rows }}", "more": "{{ inputs.a.metadata.get('n') + 1 }}"}
    )
    sample = {"inputs": {"a": {"metadata": unknown("inputs['a'].metadata")}}}
    assert template.render_sample(sample, strict=True) == (
        {"rows": None, "more": None},
        ["rows", "more"],
    )


def test_a_strict_sample_render_refuses_an_undefined_name() -> None:
    template = compile_template({"day": "{{ partiton }}"})
    assert template.render_sample({}) == ({"day": None}, ["day"])
    with pytest.raises(TemplateError, match=r"^day: 'partiton' is undefined$"):
        template.render_sample({}, strict=True)


def test_a_sample_render_refuses_a_budget_overrun() -> None:
    with pytest.raises(TemplateError, match=r"^day: makes an integer"):
        compile_template({"day": "{{ 9 ** (9 ** 9) }}"}).render_sample({})


# -- random templates ----------------------------------------------------------------------

ATOMS = [
    "1", "0", "-3", "2.5", "10**6", "1e300", "'ab'", "'%d'", "'{}'", "'x' * 999", "partition",
    "generation", "missing", "inputs", "[1, 2]", "(1, 2)", "{'k': 'v'}", "range(5)", "none",
]  # fmt: skip
OPERATORS = ["+", "-", "*", "/", "//", "%", "**", "~", "==", "in", "and", "or"]
FILTERS = [
    "upper", "length", "list", "string", "tojson", "join(',')", "center(100000000)", "batch(3)",
    "sum", "first", "int", "reverse", "replace('a', 'bb')", "format(1)", "indent(5)", "unique",
    "sort", "round(2)", "default(0)", "tojson(indent=4)", "wordwrap(2)", "dictsort",
]  # fmt: skip
METHODS = [
    ".split()", ".ljust(10**8)", ".join(['x', 'y'])", ".replace('', 'xx')", ".format(1, 2)",
    ".upper()", ".items()", ".get('k')", ".zfill(99999)", ".count('a')",
]  # fmt: skip

expressions = st.recursive(
    st.sampled_from(ATOMS),
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(OPERATORS), inner).map(lambda t: "({} {} {})".format(*t)),
        st.tuples(inner, st.sampled_from(FILTERS)).map(lambda t: f"({t[0]}|{t[1]})"),
        st.tuples(inner, st.sampled_from(METHODS)).map(lambda t: f"({t[0]}){t[1]}"),
        st.lists(inner, max_size=3).map(lambda items: "[" + ", ".join(items) + "]"),
    ),
    max_leaves=10,
)  # fmt: skip
templates = st.one_of(
    expressions.map(lambda e: f"{{{{ {e} }}}}"),
    st.tuples(expressions, expressions).map(
        lambda t: (
            f"{{% for x in {t[0]} %}}{{% for y in {t[0]} %}}{{{{ {t[1]} }}}}"
            "{% endfor %}{% endfor %}"
        )
    ),
    expressions.map(
        lambda e: (
            "{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}"
            f"{{{{ {e} }}}}{{% endmacro %}}{{{{ f(4) }}}}"
        )
    ),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(templates)
def test_a_random_template_renders_something_sendable_or_is_a_template_error(source: str) -> None:
    try:
        value = render(source)
    except TemplateError:
        return
    text = json.dumps(value, allow_nan=False, ensure_ascii=False)
    text.encode()  # what an HTTP client does with it: no lone surrogate
    assert len(text) <= 6 * MAX_CHARS  # a character escapes to six at most (\u0000)


# -- baton check ---------------------------------------------------------------------------


def contract(name: str, trigger: str, partitioned: str = "daily") -> str:
    """A contract whose trigger's offending field is on line 6."""
    return (
        f"name: {name}\npartitioned: {partitioned}\nwhen: a\ntrigger:\n  target: hook\n{trigger}\n"
    )


POISON = {
    "range.yaml": (contract("range", '  body: "{{ range(3) }}"'),
                   "trigger.body: renders to a range, which cannot be sent as JSON"
                   " (rendered for sample partition "),
    "tower.yaml": (contract("tower", '  body: {rows: "{{ 9 ** (9 ** 9) }}"}', "hourly"),
                   "trigger.body.rows: makes an integer of more than 4,096 bits"),
    "macro.yaml": (contract("macro", '  body: "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}"'),
                   "trigger.body: nests calls deeper than 50"),
    "repeat.yaml": (contract("repeat", "  body: \"{{ 'a' * 10**9 }}\"", "weekly"),
                    "trigger.body: would build a repetition of about 1,000,000,000 characters"),
    "lipsum.yaml": (contract("lipsum", '  body: "{{ lipsum }}"', "monthly"),
                    "trigger.body: renders to a function, which cannot be sent as JSON"),
    "header.yaml": (contract("header", '  headers: {X-Count: "{{ 1 }}"}', "none"),
                    "trigger.headers.X-Count: Input should be a valid string (target kind:"
                    " webhook, as rendered for a sample trigger)"),
    "typo.yaml": (contract("typo", '  body: {day: "{{ partiton }}"}'),
                  "trigger.body.day: 'partiton' is undefined"),
    "date.yaml": (contract("date", "  body: {day: 2026-11-23}"),
                  "trigger.body.day: renders to a date, which cannot be sent as JSON"),
    "syntax.yaml": (contract("syntax", '  body: {day: "{{ 1 + }}"}'),
                    "trigger.body.day: does not compile: "),
}  # fmt: skip

GOOD = """name: good
partitioned: static
partitions: [eu, us]
when: {all_of: [a, b]}
trigger:
  target: hook
  headers: {X-Rows: "{{ inputs['a'].metadata.rows }}"}
  body:
    region: "{{ partition }}"
    rows: "{{ inputs['a'].metadata.get('rows', 0) + 1 }}"
    events: "{{ inputs['b'].events|length }}"
    missing: "{{ missing|join(',') }}"
    inputs: "{{ inputs['b']|tojson }}"
"""


def test_check_refuses_each_poison_trigger_at_its_line_without_a_traceback(
    cluster: Cluster,
) -> None:
    folder = cluster.write_contracts({name: text for name, (text, _) in POISON.items()})
    cluster.write_config("http://127.0.0.1:9")
    result = cluster.cli("check", check=False)
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    for name, (_, message) in POISON.items():
        assert f"{folder / name}:6: {message}" in result.stderr, name


def test_check_accepts_a_trigger_that_reads_what_only_a_real_event_carries(
    cluster: Cluster,
) -> None:
    cluster.write_contracts({"good.yaml": GOOD})
    cluster.write_config("http://127.0.0.1:9")
    result = cluster.cli("check", check=False)
    assert result.returncode == 0, result.stderr
    assert "1 contract OK" in result.stdout


def test_the_example_contracts_render_for_their_sample_partitions() -> None:
    root = Path(__file__).parent.parent / "contracts"
    _, errors = check_contracts(root, {"example-hook": "webhook"})
    assert [str(e) for e in errors] == []


def test_a_template_says_which_names_of_the_context_it_reads() -> None:
    """So that a trigger's request is made of what is read (its inputs read back only
    if a template reads `inputs`)."""
    fields = {"a": "{{ partition }}", "b": ["x {{ inputs['d'].metadata.n }}", 3],
              "c": "{% for e in missing %}{{ e }}{% set y = e %}{{ y }}{% endfor %}",
              "d": "{{ range(2)|list }}", "e": "plain"}  # fmt: skip
    # Jinja's own globals (range) are not the context's
    assert compile_template(fields).reads == {"partition", "inputs", "missing"}
    assert compile_template({"body": {"sent": "0"}}).reads == frozenset()
