// A JSON Schema check for the subset the browser tests' schemas use (structured output, tool
// arguments): enum, object (required, properties, additionalProperties: false), array (items,
// minItems, maxItems), string (maxLength), integer and number (minimum, maximum).

// What is wrong with `v` against schema `s`: a list (empty when valid).
export function violations(v, s, at = '$') {
  const out = [];
  if (s.enum && !s.enum.some((e) => JSON.stringify(e) === JSON.stringify(v))) out.push(`${at}: ${JSON.stringify(v)} is not one of ${JSON.stringify(s.enum)}`);
  switch (s.type) {
    case 'object': {
      if (typeof v !== 'object' || v === null || Array.isArray(v)) return [...out, `${at}: not an object`];
      for (const r of s.required ?? []) if (!(r in v)) out.push(`${at}: ${r} is missing`);
      for (const [k, x] of Object.entries(v)) {
        if (s.properties?.[k]) out.push(...violations(x, s.properties[k], `${at}.${k}`));
        else if (s.additionalProperties === false) out.push(`${at}: ${k} is not allowed`);
      }
      break;
    }
    case 'array':
      if (!Array.isArray(v)) return [...out, `${at}: not an array`];
      if (s.minItems != null && v.length < s.minItems) out.push(`${at}: ${v.length} < minItems ${s.minItems}`);
      if (s.maxItems != null && v.length > s.maxItems) out.push(`${at}: ${v.length} > maxItems ${s.maxItems}`);
      v.forEach((x, i) => out.push(...violations(x, s.items, `${at}[${i}]`)));
      break;
    case 'string':
      if (typeof v !== 'string') return [...out, `${at}: not a string`];
      if (s.maxLength != null && [...v].length > s.maxLength) out.push(`${at}: longer than ${s.maxLength}`);
      break;
    case 'integer':
    case 'number':
      if (typeof v !== 'number' || !Number.isFinite(v)) return [...out, `${at}: not a number`];
      if (s.type === 'integer' && !Number.isInteger(v)) out.push(`${at}: ${v} is not an integer`);
      if (s.minimum != null && v < s.minimum) out.push(`${at}: ${v} < ${s.minimum}`);
      if (s.maximum != null && v > s.maximum) out.push(`${at}: ${v} > ${s.maximum}`);
      break;
  }
  return out;
}
