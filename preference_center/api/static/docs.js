// Renders /api/v1/openapi.json as a readable reference. Self-contained (no CDN, no framework): the app's
// Content-Security-Policy allows scripts and styles from this origin only, and this file builds the DOM
// with textContent, never innerHTML, so nothing in the document can inject markup.
"use strict";

(function () {
  const METHODS = ["get", "put", "post", "delete", "patch"];
  let doc = null;

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "class") node.className = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function resolve(schema) {
    let seen = 0;
    while (schema && schema.$ref && seen++ < 20) {
      const path = schema.$ref.replace(/^#\//, "").split("/");
      schema = path.reduce((node, part) => (node ? node[part] : undefined), doc);
    }
    return schema || {};
  }

  function refName(schema) {
    return schema && schema.$ref ? schema.$ref.split("/").pop() : null;
  }

  function typeOf(schema) {
    const name = refName(schema);
    if (name) return name;
    if (schema.anyOf) return schema.anyOf.map(typeOf).join(" | ");
    if (schema.const !== undefined) return JSON.stringify(schema.const);
    if (schema.enum) return schema.enum.map((v) => JSON.stringify(v)).join(" | ");
    if (schema.type === "array") return "array of " + typeOf(schema.items || {});
    if (schema.type === "object" && schema.additionalProperties && typeof schema.additionalProperties === "object") {
      return "object of " + typeOf(schema.additionalProperties);
    }
    let type = Array.isArray(schema.type) ? schema.type.join(" | ") : schema.type || "any";
    if (schema.format) type += " (" + schema.format + ")";
    return type;
  }

  function limits(schema) {
    const parts = [];
    const s = schema.anyOf ? schema.anyOf.find((b) => b.type !== "null") || schema : schema;
    if (s.minLength !== undefined) parts.push("min length " + s.minLength);
    if (s.maxLength !== undefined) parts.push("max length " + s.maxLength);
    if (s.minimum !== undefined) parts.push("≥ " + s.minimum);
    if (s.maximum !== undefined) parts.push("≤ " + s.maximum);
    if (s.maxItems !== undefined) parts.push("at most " + s.maxItems + " items");
    if (s.pattern) parts.push("pattern " + s.pattern);
    if (s.items && s.items.pattern) parts.push("items match " + s.items.pattern);
    if (schema.default !== undefined && schema.default !== null) parts.push("default " + JSON.stringify(schema.default));
    return parts.join("; ");
  }

  function nestedObject(schema) {
    let target = schema;
    if (schema.anyOf) target = schema.anyOf.find((b) => b.type !== "null") || schema;
    if (target.type === "array") target = target.items || {};
    const name = refName(target);
    const resolved = resolve(target);
    return resolved.properties ? { name, schema: resolved } : null;
  }

  function fields(schema, depth, seen) {
    schema = resolve(schema);
    if (!schema.properties) return el("p", { class: "muted" }, typeOf(schema));
    const required = new Set(schema.required || []);
    const body = el("tbody");
    for (const [name, prop] of Object.entries(schema.properties)) {
      const nested = depth < 3 ? nestedObject(prop) : null;
      const about = el("td", {}, el("div", { class: "desc" }, prop.description || ""), el("div", { class: "muted" }, limits(prop)));
      if (nested && !(nested.name && seen.has(nested.name))) {
        const next = new Set(seen);
        if (nested.name) next.add(nested.name);
        about.append(el("div", { class: "nested" }, fields(nested.schema, depth + 1, next)));
      }
      body.append(el("tr", {}, el("td", {}, el("code", {}, name), required.has(name) ? el("span", { class: "req" }, " required") : null),
        el("td", {}, el("span", { class: "type" }, typeOf(prop))), about));
    }
    const closed = schema.additionalProperties === false ? el("p", { class: "muted" }, "Other fields are refused (422).") : null;
    return el("div", {}, el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "field"), el("th", {}, "type"), el("th", {}, "notes"))), body), closed);
  }

  function slug(method, path) {
    return (method + path).replace(/[^a-zA-Z0-9]+/g, "-");
  }

  function operation(method, path, op) {
    const security = op.security !== undefined ? op.security : doc.security;
    const section = el("section", { class: "op", id: slug(method, path) },
      el("h3", {}, el("span", { class: "method " + method }, method), el("code", {}, path), el("span", {}, op.summary || "")));
    if (op.description) section.append(el("p", {}, op.description));
    section.append(el("p", { class: "muted" }, security && security.length ? "Needs Authorization: Bearer <token>." : "No token needed."));
    if (op.parameters && op.parameters.length) {
      section.append(el("h4", {}, "Parameters"));
      const rows = op.parameters.map((p) => el("tr", {}, el("td", {}, el("code", {}, p.name)), el("td", {}, p.in),
        el("td", {}, el("span", { class: "type" }, typeOf(p.schema || {}))),
        el("td", {}, el("div", { class: "desc" }, p.description || ""), el("div", { class: "muted" }, (p.required ? "required; " : "") + limits(p.schema || {})))));
      section.append(el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "name"), el("th", {}, "in"), el("th", {}, "type"), el("th", {}, "notes"))), el("tbody", {}, ...rows)));
    }
    if (op.requestBody) {
      const content = op.requestBody.content || {};
      const media = Object.keys(content)[0];
      section.append(el("h4", {}, "Body ", el("span", { class: "muted" }, media + (op.requestBody.required ? "" : ", optional") + (refName(content[media].schema) ? " — " + refName(content[media].schema) : ""))));
      section.append(fields(content[media].schema, 0, new Set()));
    }
    section.append(el("h4", {}, "Responses"));
    const list = el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "status"), el("th", {}, "meaning"), el("th", {}, "body"))));
    const body = el("tbody");
    for (const [status, response] of Object.entries(op.responses || {})) {
      const content = response.content || {};
      const media = Object.keys(content)[0];
      const schema = media ? content[media].schema || {} : {};
      const shape = media === "application/json" ? typeOf(schema) : media || "";
      body.append(el("tr", {}, el("td", {}, el("span", { class: "status " + (status < "400" ? "ok" : "err") }, status)),
        el("td", {}, response.description || ""), el("td", {}, el("span", { class: "type" }, shape))));
    }
    list.append(body);
    section.append(list);
    return section;
  }

  function render() {
    const main = document.getElementById("reference");
    const toc = document.getElementById("toc");
    main.textContent = "";
    main.append(el("h1", {}, doc.info.title + " ", el("span", { class: "muted" }, doc.info.version)));
    for (const paragraph of (doc.info.description || "").split("\n\n")) main.append(el("p", {}, paragraph));
    if (doc.servers && doc.servers.length) main.append(el("p", {}, "Base URL: ", el("code", {}, doc.servers[0].url)));
    const byTag = new Map();
    for (const [path, item] of Object.entries(doc.paths)) {
      for (const method of METHODS) {
        if (!item[method]) continue;
        const tag = (item[method].tags || ["Other"])[0];
        if (!byTag.has(tag)) byTag.set(tag, []);
        byTag.get(tag).push([method, path, item[method]]);
      }
    }
    for (const [tag, ops] of byTag) {
      const block = el("div", { class: "tag" }, el("h2", { id: "tag-" + tag }, tag));
      toc.append(el("h3", {}, tag));
      for (const [method, path, op] of ops) {
        block.append(operation(method, path, op));
        toc.append(el("a", { href: "#" + slug(method, path) }, method.toUpperCase() + " " + path));
      }
      main.append(block);
    }
    const schemas = (doc.components && doc.components.schemas) || {};
    const block = el("div", { class: "tag" }, el("h2", { id: "schemas" }, "Schemas"));
    toc.append(el("h3", {}, "Schemas"));
    for (const [name, schema] of Object.entries(schemas)) {
      block.append(el("section", { class: "op", id: "schema-" + name }, el("h3", {}, el("code", {}, name)),
        schema.description ? el("p", {}, schema.description) : null, fields(schema, 0, new Set([name]))));
      toc.append(el("a", { href: "#schema-" + name }, name));
    }
    main.append(block);
  }

  document.addEventListener("DOMContentLoaded", () => {
    fetch("openapi.json", { headers: { Accept: "application/json" } })
      .then((response) => {
        if (!response.ok) throw new Error("openapi.json answered " + response.status);
        return response.json();
      })
      .then((json) => { doc = json; render(); })
      .catch((error) => {
        const main = document.getElementById("reference");
        main.textContent = "";
        main.append(el("p", { class: "error" }, "Could not load the API description: " + error.message));
      });
  });
})();
