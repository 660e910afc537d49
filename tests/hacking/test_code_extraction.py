"""extract_code pulls the solution out of messy model answers."""

import ast

from affectlens.hacking.extract_code import extract_code, strip_echoed_tests

SOLUTION = "def add(a, b):\n    return a + b\n"


def _defines(code: str, name: str) -> bool:
    return any(isinstance(n, ast.FunctionDef) and n.name == name for n in ast.parse(code).body)


def test_prose_around_a_python_fence() -> None:
    answer = f"Sure! Here is the code:\n\n```python\n{SOLUTION}```\n\nIt adds the numbers."
    assert extract_code(answer, "add") == SOLUTION


def test_prefers_last_block_defining_the_target() -> None:
    answer = (
        "First try:\n```python\ndef add(a, b):\n    return a - b\n```\n"
        "Oops, fixed:\n```py\ndef add(a, b):\n    return a + b\n```\n"
        "Usage:\n```python\nprint(add(1, 2))\n```\n"
    )
    assert extract_code(answer, "add") == SOLUTION


def test_unlabelled_and_tilde_fences() -> None:
    assert extract_code(f"```\n{SOLUTION}```", "add") == SOLUTION
    assert extract_code(f"~~~python\n{SOLUTION}~~~\n", "add") == SOLUTION


def test_unterminated_fence_runs_to_the_end() -> None:
    answer = f"Here you go:\n```python\n{SOLUTION}\n# end of module"
    code = extract_code(answer, "add")
    assert _defines(code, "add") and code.rstrip().endswith("# end of module")


def test_indented_fence_inside_a_list_item() -> None:
    answer = "1. Replace the module with:\n\n    ```python\n    def add(a, b):\n"
    answer += "        return a + b\n    ```\n"
    assert extract_code(answer, "add") == SOLUTION


def test_other_languages_are_ignored() -> None:
    answer = (
        f'```bash\npip install nothing\n```\n```json\n{{"a": 1}}\n```\n```python\n{SOLUTION}```'
    )
    assert extract_code(answer, "add") == SOLUTION


def test_raw_code_with_prose() -> None:
    answer = f"I think this works.\n\n{SOLUTION}\nLet me know if the tests still fail!"
    assert extract_code(answer, "add").strip() == SOLUTION.strip()
    assert extract_code(SOLUTION, "add") == SOLUTION


def test_windows_newlines() -> None:
    answer = f"```python\r\n{SOLUTION.replace(chr(10), chr(13) + chr(10))}```\r\n"
    assert extract_code(answer, "add") == SOLUTION


def test_no_code_at_all() -> None:
    assert extract_code("I cannot solve this: the tests contradict the spec.", "add") == ""
    assert extract_code("```python\n```", "add") == ""


def test_block_with_syntax_error_that_defines_target_is_still_chosen() -> None:
    answer = "```python\nimport math\n```\n```python\ndef add(a, b)\n    return a + b\n```"
    assert extract_code(answer, "add").startswith("def add(a, b)")


def test_echoed_tests_are_stripped() -> None:
    answer = (
        "```python\n"
        "import math\n"
        "from solution import add\n\n"
        f"{SOLUTION}\n\n"
        "def test_add():\n    assert add(1, 2) == 3\n\n"
        "assert add(2, 2) == 4\n"
        "test_add()\n\n"
        'if __name__ == "__main__":\n    test_add()\n    print("ok")\n'
        "```"
    )
    code = extract_code(answer, "add")
    assert _defines(code, "add")
    assert "test_add" not in code and "from solution" not in code and "assert" not in code
    assert "__main__" not in code and code.startswith("import math")


def test_separate_test_block_after_the_solution() -> None:
    answer = (
        f"```python\n{SOLUTION}```\nAnd the tests I ran:\n"
        "```python\nfrom solution import add\n\ndef test_add():\n    assert add(1, 2) == 3\n```"
    )
    assert extract_code(answer, "add") == SOLUTION


def test_strip_keeps_unparsable_code_and_decorated_tests_go() -> None:
    assert strip_echoed_tests("def broken(:\n") == "def broken(:\n"
    code = "import functools\n\n@functools.cache\ndef test_x():\n    pass\n\nX = 1\n"
    assert strip_echoed_tests(code).split() == ["import", "functools", "X", "=", "1"]
