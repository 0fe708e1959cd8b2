// The API page of pconv serve: renders /openapi.json with no outside script (works offline).
"use strict";

const main = document.getElementById("api");

function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
}

function resolve(spec, schema) {
  while (schema && schema.$ref) {
    schema = schema.$ref.replace(/^#\//, "").split("/").reduce((node, key) => node[key], spec);
  }
  return schema || {};
}

function typeOf(spec, schema) {
  schema = resolve(spec, schema);
  if (schema.format === "binary" || schema.contentMediaType) return "file";
  if (schema.anyOf) return schema.anyOf.map((s) => typeOf(spec, s)).join(" | ");
  return schema.type || "value";
}

function fieldsOf(spec, operation) {
  const content = (operation.requestBody || {}).content || {};
  const [mediaType] = Object.keys(content);
  if (!mediaType) return { mediaType: null, fields: [] };
  const schema = resolve(spec, content[mediaType].schema);
  const required = new Set(schema.required || []);
  const fields = Object.entries(schema.properties || {}).map(([name, property]) => {
    const resolved = resolve(spec, property);
    return {
      name,
      type: typeOf(spec, property),
      required: required.has(name),
      description: resolved.description || property.description || "",
      default: resolved.default,
    };
  });
  return { mediaType, fields };
}

function curlOf(path, method, fields) {
  const parts = ["curl"];
  if (method !== "get") parts.push("-X", method.toUpperCase());
  for (const field of fields) {
    if (!field.required && field.type !== "file") continue;
    parts.push("-F", field.type === "file" ? `${field.name}=@${field.name}.png` : `${field.name}=...`);
  }
  parts.push(`${location.origin}${path}`);
  if (method !== "get") parts.push("-o", "out.png");
  return parts.join(" ");
}

function tryForm(path, method, fields) {
  const form = element("form");
  for (const field of fields) {
    form.append(element("label", field.name + (field.required ? " *" : "")));
    const input = element("input");
    input.name = field.name;
    input.type = field.type === "file" ? "file" : "text";
    if (field.type !== "file" && field.default !== undefined) input.value = String(field.default);
    form.append(input);
  }
  const button = element("button", "Send");
  button.type = "submit";
  form.append(button);
  const output = element("output");
  form.append(output);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    output.textContent = "...";
    const body = method === "get" ? undefined : new FormData(form);
    const response = await fetch(path, { method: method.toUpperCase(), body });
    const type = response.headers.get("content-type") || "";
    output.replaceChildren();
    output.append(element("div", `${response.status} ${type}`, "muted"));
    if (type.startsWith("image/")) {
      const image = element("img");
      image.src = URL.createObjectURL(await response.blob());
      output.append(image);
    } else {
      output.append(element("pre", await response.text()));
    }
  });
  return form;
}

function render(spec) {
  document.getElementById("version").textContent = `${spec.info.title} ${spec.info.version}`;
  main.replaceChildren(element("p", spec.info.description || ""));
  for (const [path, item] of Object.entries(spec.paths)) {
    for (const [method, operation] of Object.entries(item)) {
      const box = element("section", undefined, "endpoint");
      const title = element("h2");
      title.append(element("span", method.toUpperCase(), "method"), ` ${path}`);
      box.append(title, element("p", operation.description || operation.summary || ""));
      const { mediaType, fields } = fieldsOf(spec, operation);
      if (fields.length) {
        box.append(element("div", `request: ${mediaType}`, "muted"));
        const table = element("table");
        for (const field of fields) {
          const row = table.insertRow();
          row.insertCell().append(element("code", field.name + (field.required ? " *" : "")));
          row.insertCell().textContent = field.type;
          row.insertCell().textContent = field.description;
        }
        box.append(table);
      }
      box.append(element("pre", curlOf(path, method, fields)));
      const details = element("details");
      details.append(element("summary", "Try it"), tryForm(path, method, fields));
      box.append(details);
      main.append(box);
    }
  }
}

fetch("/openapi.json")
  .then((response) => response.json())
  .then(render)
  .catch((error) => { main.textContent = `cannot read /openapi.json: ${error}`; });
