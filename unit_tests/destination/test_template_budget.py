"""A prompt template runs once per record, thousands of times a second: a template that loops,
multiplies or recurses without end must cost that record an error row, never a hung sync or a
machine out of memory, while ordinary templates render exactly as before."""

import pytest
from airbyte_cdk.models import FailureType
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from destination_mistral.enrich import template_budget, templates
from destination_mistral.enrich.templates import RecordError, compile_template, render

BIG = "{% set s = 'x' * 999999 %}"

HOSTILE = {
    "nested loops printing": "{% for a in range(100000) %}{% for b in range(100000) %}x{% endfor %}{% endfor %}",
    "nested loops silent": "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
    "string repetition": "{{ 'x' * 10**9 }}",
    "list repetition": "{{ [0] * 10**9 }}",
    "huge range to list": "{{ range(10**9)|list }}",
    "huge join of repeated strings": BIG + "{{ ([s] * 999999)|join }}",
    "join with a huge separator": "{{ range(100000)|join('x' * 999999) }}",
    "str.join of repeated strings": BIG + "{{ ''.join([s] * 999) }}",
    "macro calling itself": "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}",
    "macro doubling its output": (
        "{% macro f(n) %}{% if n %}{% set t = f(n-1) %}{{ t }}{{ t }}{% else %}x{% endif %}{% endmacro %}{{ f(40) }}"
    ),
    "concatenation doubling in a loop": (
        "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}"
    ),
    "addition doubling in a loop": (
        "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s }}"
    ),
    "nested lists sharing one big string": BIG
    + "{% set a = [s,s,s,s,s,s,s,s,s,s] %}{% set b = [a,a,a,a,a,a,a,a,a,a] %}{{ b }}",
    "nested lists to json": BIG
    + "{% set a = [s,s,s,s,s,s,s,s,s,s] %}{% set b = [a,a,a,a,a,a,a,a,a,a] %}{{ b|tojson }}",
    "namespace holding a big string many times": BIG + "{% set ns = namespace(a=s, b=s) %}{{ [ns, ns, ns] }}",
    "center filter width": "{{ 'x'|center(10**9) }}",
    "str.ljust width": "{{ 'x'.ljust(10**9) }}",
    "format filter width": "{{ '%0999999999d'|format(1) }}",
    "str.format width": "{{ '{:>999999999}'.format(1) }}",
    "percent operator star width": "{{ '%*s' % (10**9, 'x') }}",
    "replace growing every character": "{{ ('x' * 999999)|replace('x', 'x' * 999999) }}",
    "replace of the empty string": "{{ ('x' * 999)|replace('', 'y' * 9999) }}",
    "indent of many lines": "{{ ('\n' * 99999)|indent(99999, true, true) }}",
    "expandtabs": "{{ ('\t' * 99999).expandtabs(99999) }}",
    "power tower": "{% set a = 10 ** 1000 %}{% set b = a ** 1000 %}{{ b ** 1000 }}",
    "multiplication doubling a number": (
        "{% set ns = namespace(n=10**999) %}{% for i in range(40) %}{% set ns.n = ns.n * ns.n %}{% endfor %}"
        "{{ ns.n > 1 }}"
    ),
    "lazy map piling up big strings": "{{ range(100000)|map('center', 999999)|join }}",
    "lazy map to a list": "{{ range(100000)|map('center', 999999)|list|length }}",
    "batch filled to a billion": "{{ [1]|batch(10**9, 'x')|list|length }}",
    "slice into a billion": "{{ [1]|slice(10**9)|list|length }}",
    "sum of lists": "{{ ([[1]] * 100000)|sum(start=[]) }}",
    "lorem ipsum generator": "{{ lipsum(10**9) }}",
    "recursive loop": "{% for x in range(100000) recursive %}{{ loop(range(100000)) }}{% endfor %}",
    "set block growing": "{% set t %}{% for i in range(100000) %}{{ 'x' * 999 }}{% endfor %}{% endset %}{{ t|length }}",
    "filter block growing": "{% filter upper %}{% for i in range(100000) %}{{ 'x' * 999 }}{% endfor %}{% endfilter %}",
}


@pytest.mark.parametrize("template", list(HOSTILE.values()), ids=list(HOSTILE))
def test_hostile_template_ends_with_a_record_error(template):
    with pytest.raises(RecordError, match="^template: "):
        render(compile_template(template), {})


def test_budget_error_names_the_limit_and_the_fix(monkeypatch):
    monkeypatch.setattr(template_budget, "MAX_SECONDS", 3600.0)  # the step count, not a slow machine, ends it
    with pytest.raises(RecordError) as raised:
        render(compile_template(HOSTILE["nested loops silent"]), {})
    message = str(raised.value)
    assert "loop iterations" in message and "simplify the template" in message, message


def test_macro_recursing_exponentially_is_stopped_by_the_step_or_time_budget():
    # 2**60 calls, each small: only the step count or the clock can stop it.
    template = compile_template(
        "{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(60) }}"
    )
    with pytest.raises(RecordError, match="over its budget"):
        render(template, {})


def test_time_budget_stops_a_render_under_the_step_limit(monkeypatch):
    monkeypatch.setattr(template_budget, "MAX_STEPS", 10**12)
    monkeypatch.setattr(template_budget, "MAX_SECONDS", 0.05)
    with pytest.raises(RecordError, match="took more than"):
        render(compile_template(HOSTILE["nested loops silent"]), {})


def test_rendered_text_over_the_limit_is_a_record_error_even_from_record_fields():
    body = "y" * (templates.MAX_RENDERED_CHARS // 2 + 1)
    with pytest.raises(RecordError, match="rendered text"):
        render(compile_template("{{ a }}{{ b }}"), {"a": body, "b": body})


def test_budget_is_per_render_not_per_template(monkeypatch):
    monkeypatch.setattr(template_budget, "MAX_SECONDS", 3600.0)  # steps only: a loaded machine must not matter
    # About 700,000 steps: under the limit once, and again, since each render starts afresh.
    template = compile_template("{% for i in range(100000) %}{% for j in range(6) %}{% endfor %}{% endfor %}ok")
    assert render(template, {}) == "ok"
    assert render(template, {}) == "ok"


def test_one_hostile_record_leaves_the_next_record_unaffected():
    template = compile_template("{% for i in range(n) %}{% for j in range(n) %}{% endfor %}{% endfor %}{{ n }}")
    with pytest.raises(RecordError):
        render(template, {"n": 100000})
    assert render(template, {"n": 3}) == "3"


@pytest.mark.parametrize(
    "template, record, expected",
    [
        (
            "{% for t in tags %}{{ loop.index }}={{ t|upper }}{% if not loop.last %}, {% endif %}{% endfor %}",
            {"tags": ["a", "b"]},
            "1=A, 2=B",
        ),
        ("{% macro item(x) %}<{{ x }}>{% endmacro %}{{ item(a) }}{{ item(b) }}", {"a": 1, "b": "z"}, "<1><z>"),
        ("{% set t %}{{ a }}-{{ b }}{% endset %}[{{ t }}]", {"a": 1, "b": 2}, "[1-2]"),
        ("{% filter upper %}{{ a }} and {{ b }}{% endfilter %}", {"a": "x", "b": "y"}, "X AND Y"),
        (
            "{% for n in tree recursive %}{{ n.name }}({{ loop(n.kids) }}){% endfor %}",
            {"tree": [{"name": "r", "kids": [{"name": "k", "kids": []}]}]},
            "r(k())",
        ),
        (
            "{{ a ~ '/' ~ b }} {{ tags|join(', ') }} {{ '%.1f'|format(p) }} {{ '{}!'.format(a) }}",
            {"a": "x", "b": 2, "tags": ["t", "u"], "p": 1.25},
            "x/2 t, u 1.2 x!",
        ),
        ("{{ record|tojson }}", {"k": [1, {"v": None}]}, '{"k":[1,{"v":null}]}'),
        ("{{ items }}", {"items": [1, "a"]}, "[1, 'a']"),
        ("{% for x in [] %}x{% else %}empty{% endfor %}", {}, "empty"),
        (
            "{{ (2 ** 10) * 3 + 1 }} {{ 'ab' * 2 }} {{ [1] + [2] }} {{ '%s-%s' % (a, b) }}",
            {"a": 1, "b": 2},
            "3073 abab [1, 2] 1-2",
        ),
        ("{{ (range(3)|list|sum) }} {{ [1,2,3]|batch(2)|list }} {{ 'a\nb'|indent(2) }}", {}, "3 [[1, 2], [3]] a\n  b"),
    ],
)
def test_ordinary_templates_render_as_before(template, record, expected):
    assert render(compile_template(template), record) == expected


@pytest.mark.parametrize(
    "template, record",
    [
        ("{{ n + 1 }}", {"n": "text"}),  # wrong type in the record
        ("{{ a / b }}", {"a": 1, "b": 0}),
        ("{{ user.name }}", {"user": "not an object"}),
    ],
)
def test_errors_caused_by_the_record_stay_record_errors(template, record):
    with pytest.raises(RecordError, match="^template: "):
        render(compile_template(template), record)


@pytest.mark.parametrize("template", ["{{ title", "{% for x in y %}", "{{ x|no_such_filter }}", "{% endfor %}"])
def test_template_invalid_for_every_record_is_a_config_error_naming_the_field(template):
    with pytest.raises(AirbyteTracedException) as raised:
        compile_template(template, "enrichment.prompt_template")
    assert raised.value.failure_type == FailureType.config_error
    assert "`enrichment.prompt_template`" in raised.value.message
