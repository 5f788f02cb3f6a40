"""Cross-file checks that neither cfn-lint nor statelint makes (they never look inside the
other's files). Run by scripts/validate-template.sh with the tools venv's Python.

- every ${Placeholder} in a state machine's DefinitionUri file has a DefinitionSubstitutions
  entry, and every entry is used;
- every rust-cargolambda function's CodeUri is a crate whose package is its Binary;
- Globals.Function.Environment names exactly the tables of shared::dynamo::TABLE_ENV_VARS;
- every !Ref / !GetAtt / ${...} in !Sub names a parameter, a resource, a pseudo parameter
  or a resource SAM generates (cfn-lint skips them inside IAM policy statements).

Prints one line per problem and exits 1 if there is any.
"""

import json
import re
import sys
import tomllib
from pathlib import Path

from cfnlint.decode import decode

PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_]+)\}")
PLACEHOLDER_SUB = re.compile(r"\$\{(?!!)([A-Za-z0-9_:.]+)\}")


def placeholders(value, found):
    """Collects ${Name} placeholders from every string in a decoded ASL document."""
    if isinstance(value, str):
        found.update(PLACEHOLDER.findall(value))
    elif isinstance(value, dict):
        for key, item in value.items():
            placeholders(key, found)
            placeholders(item, found)
    elif isinstance(value, list):
        for item in value:
            placeholders(item, found)
    return found


def check_state_machines(resources, problems):
    for logical_id, resource in resources.items():
        if resource.get("Type") != "AWS::Serverless::StateMachine":
            continue
        props = resource.get("Properties", {})
        uri = props.get("DefinitionUri")
        if not isinstance(uri, str):
            continue
        path = Path(uri)
        if not path.is_file():
            problems.append(f"{logical_id}: DefinitionUri {uri} does not exist")
            continue
        try:
            definition = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            problems.append(f"{uri}: not valid JSON: {err}")
            continue
        used = placeholders(definition, set())
        given = set((props.get("DefinitionSubstitutions") or {}).keys())
        for name in sorted(used - given):
            problems.append(f"{uri}: ${{{name}}} has no DefinitionSubstitutions entry in {logical_id}")
        for name in sorted(given - used):
            problems.append(f"{logical_id}: DefinitionSubstitutions {name} is not used in {uri}")
        if used == given:
            print(f"    {logical_id}: {uri}: {len(used)} placeholders, all substituted")


def check_functions(resources, problems):
    for logical_id, resource in resources.items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        metadata = resource.get("Metadata") or {}
        if metadata.get("BuildMethod") != "rust-cargolambda":
            continue
        binary = (metadata.get("BuildProperties") or {}).get("Binary")
        code_uri = (resource.get("Properties") or {}).get("CodeUri")
        manifest = Path(str(code_uri)) / "Cargo.toml"
        if not manifest.is_file():
            problems.append(f"{logical_id}: CodeUri {code_uri} has no Cargo.toml")
            continue
        package = tomllib.loads(manifest.read_text()).get("package", {}).get("name")
        # The package's main binary, or one of its src/bin/<name>.rs.
        binaries = {package} | {p.stem for p in (Path(str(code_uri)) / "src" / "bin").glob("*.rs")}
        if binary not in binaries:
            problems.append(f"{logical_id}: Binary {binary!r} but {manifest} builds {sorted(binaries)}")
        else:
            print(f"    {logical_id}: {code_uri} -> bin {binary}")


def check_table_env(template, problems):
    source = Path("shared/src/dynamo/mod.rs").read_text()
    match = re.search(r"TABLE_ENV_VARS: \[&str; \d+\] = \[(.*?)\];", source, re.S)
    if not match:
        problems.append("shared/src/dynamo/mod.rs: TABLE_ENV_VARS not found")
        return
    expected = set(re.findall(r'"([A-Z_]+)"', match.group(1)))
    variables = (
        template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
    )
    declared = {name for name in variables if name.endswith("_TABLE_NAME")}
    for name in sorted(expected - declared):
        problems.append(f"Globals.Function.Environment lacks {name} (shared::dynamo::TABLE_ENV_VARS)")
    for name in sorted(declared - expected):
        problems.append(f"Globals.Function.Environment has {name}, unknown to TABLE_ENV_VARS")


PSEUDO = {
    "AWS::AccountId", "AWS::NoValue", "AWS::NotificationARNs", "AWS::Partition",
    "AWS::Region", "AWS::StackId", "AWS::StackName", "AWS::URLSuffix",
}


def generated_ids(resources):
    """Logical ids the SAM transform adds, which the template may refer to."""
    ids = set()
    for logical_id, resource in resources.items():
        kind = resource.get("Type")
        if kind in ("AWS::Serverless::Function", "AWS::Serverless::StateMachine"):
            ids.add(f"{logical_id}Role")
        if kind == "AWS::Serverless::Api":
            ids.update(f"{logical_id}{suffix}" for suffix in
                       ("Stage", "Deployment", "ApiKey", "UsagePlan", "UsagePlanKey"))
    return ids


def references(value, found):
    """Yields (kind, target) for every Ref, GetAtt and ${...} in a !Sub, recursively."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "Ref" and isinstance(item, str):
                # SAM's `!Ref Api.Stage` / `.Deployment` name the API's generated resources.
                found.append(("Ref", item.removesuffix(".Stage").removesuffix(".Deployment")))
            elif key == "Fn::GetAtt":
                target = item[0] if isinstance(item, list) else str(item).split(".")[0]
                found.append(("GetAtt", target))
            elif key == "Fn::Sub":
                pattern = item[0] if isinstance(item, list) else item
                local = set(item[1].keys()) if isinstance(item, list) and len(item) > 1 else set()
                for name in PLACEHOLDER_SUB.findall(str(pattern)):
                    target = name.split(".")[0]
                    if target not in local:
                        found.append(("Sub", target))
            references(item, found)
    elif isinstance(value, list):
        for item in value:
            references(item, found)
    return found


def check_references(template, problems):
    resources = template.get("Resources", {})
    known = set(resources) | set(template.get("Parameters", {})) | PSEUDO | generated_ids(resources)
    for section in ("Globals", "Resources", "Outputs", "Rules"):
        for kind, target in references(template.get(section, {}), []):
            if target not in known:
                problems.append(f"{section}: {kind} to unknown {target!r}")


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "template.yml"
    template, matches = decode(path)
    if matches:
        for match in matches:
            print(f"{path}: {match}")
        return 1
    problems = []
    resources = template.get("Resources", {})
    check_state_machines(resources, problems)
    check_functions(resources, problems)
    check_table_env(template, problems)
    check_references(template, problems)
    for problem in problems:
        print(f"error: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
