package config

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

var durationType = reflect.TypeFor[Duration]()

// decode stores the YAML node n into v, which must be settable, following
// the yaml tags of structs. It records the line of every key path, and an
// error for every unknown key and every value of the wrong kind.
func (s *source) decode(n *yaml.Node, v reflect.Value, path string) {
	n = resolveAlias(n)
	if isNull(n) {
		return
	}
	s.set[path] = true
	switch {
	case v.Type() == durationType:
		s.decodeDuration(n, v, path)
	case v.Kind() == reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		s.decode(n, v.Elem(), path)
	case v.Kind() == reflect.Struct:
		s.decodeStruct(n, v, path)
	case v.Kind() == reflect.Map:
		s.decodeMap(n, v, path)
	case v.Kind() == reflect.Slice:
		s.decodeSlice(n, v, path)
	case v.Kind() == reflect.String:
		if str, ok := s.scalar(n, path, "a string"); ok {
			v.SetString(str)
		}
	case v.CanInt():
		s.decodeInt(n, v, path)
	case v.Kind() == reflect.Bool:
		s.decodeBool(n, v, path)
	default:
		panic(fmt.Sprintf("config: no decoder for %s", v.Type()))
	}
}

// field is one yaml-tagged field of a struct.
type field struct {
	key   string
	index int
}

// yamlFields lists the decodable fields of struct type t in declaration order.
func yamlFields(t reflect.Type) []field {
	var fields []field
	for i := range t.NumField() {
		f := t.Field(i)
		key, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || key == "-" {
			continue
		}
		if key == "" {
			key = strings.ToLower(f.Name)
		}
		fields = append(fields, field{key: key, index: i})
	}
	return fields
}

func (s *source) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	fields := yamlFields(v.Type())
	keys := make([]string, len(fields))
	for i, f := range fields {
		keys[i] = f.key
	}
	allowed := strings.Join(keys, ", ")
	if n.Kind != yaml.MappingNode {
		s.decodeError(n.Line, path, "expected a mapping with keys %s, got %s", allowed, kindName(n))
		return
	}
	s.eachKey(n, path, func(key, keyPath string, k, val *yaml.Node) {
		for _, f := range fields {
			if f.key == key {
				s.decode(val, v.Field(f.index), keyPath)
				return
			}
		}
		s.decodeError(k.Line, keyPath, "unknown key %q (allowed: %s)", key, allowed)
	})
}

func (s *source) decodeMap(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		s.decodeError(n.Line, path, "expected a mapping, got %s", kindName(n))
		return
	}
	if v.IsNil() {
		v.Set(reflect.MakeMap(v.Type()))
	}
	s.eachKey(n, path, func(key, keyPath string, _, val *yaml.Node) {
		elem := newElem(v.Type().Elem())
		s.decode(val, elem, keyPath)
		v.SetMapIndex(reflect.ValueOf(key).Convert(v.Type().Key()), elem)
	})
}

func (s *source) decodeSlice(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.SequenceNode {
		s.decodeError(n.Line, path, "expected a list, got %s", kindName(n))
		return
	}
	out := reflect.MakeSlice(v.Type(), 0, len(n.Content))
	for i, item := range n.Content {
		itemPath := fmt.Sprintf("%s[%d]", path, i)
		s.lines[itemPath] = item.Line
		elem := newElem(v.Type().Elem())
		s.decode(item, elem, itemPath)
		out = reflect.Append(out, elem)
	}
	v.Set(out)
}

// newElem returns a settable zero value of a map or list element type; a
// pointer element points at a zero value, so that an entry written as null
// is there to be validated.
func newElem(t reflect.Type) reflect.Value {
	elem := reflect.New(t).Elem()
	if t.Kind() == reflect.Pointer {
		elem.Set(reflect.New(t.Elem()))
	}
	return elem
}

// keyFunc handles one key of a mapping: key is its text, keyPath its path,
// k and val its nodes.
type keyFunc func(key, keyPath string, k, val *yaml.Node)

// eachKey calls fn for every key of the mapping n, after recording the key's
// line and rejecting keys that are not plain strings or are repeated. Keys
// brought in by merge keys (<<: *anchor) come last and only where the mapping
// does not set them itself.
func (s *source) eachKey(n *yaml.Node, path string, fn keyFunc) {
	seen := make(map[string]int, len(n.Content)/2)
	for _, merge := range s.ownKeys(n, path, seen, fn, true) {
		s.mergeKeys(merge, path, seen, fn)
	}
}

// ownKeys calls fn for the keys of mapping n not yet in seen and returns the
// values of its merge keys. Repeated keys are errors when strict is set, and
// are skipped otherwise (the mapping is merged into another).
func (s *source) ownKeys(n *yaml.Node, path string, seen map[string]int, fn keyFunc,
	strict bool) []*yaml.Node {
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := resolveAlias(n.Content[i]), n.Content[i+1]
		switch {
		case k.Kind != yaml.ScalarNode:
			s.decodeError(k.Line, path, "expected a string key, got %s", kindName(k))
			continue
		case k.ShortTag() == "!!merge":
			merges = append(merges, val)
			continue
		}
		keyPath := joinPath(path, k.Value)
		if first, dup := seen[k.Value]; dup {
			if strict {
				s.decodeError(k.Line, keyPath, "mapping key %q already defined at line %d",
					k.Value, first)
			}
			continue
		}
		seen[k.Value] = k.Line
		s.lines[keyPath] = k.Line
		fn(k.Value, keyPath, k, val)
	}
	return merges
}

// mergeKeys brings in the keys of the value of a merge key: a mapping or a
// list of mappings, earlier ones taking precedence.
func (s *source) mergeKeys(v *yaml.Node, path string, seen map[string]int, fn keyFunc) {
	v = resolveAlias(v)
	items := []*yaml.Node{v}
	if v.Kind == yaml.SequenceNode {
		items = v.Content
	}
	for _, item := range items {
		item = resolveAlias(item)
		if item.Kind != yaml.MappingNode {
			s.decodeError(item.Line, path,
				"a merge key (<<) takes a mapping or a list of mappings, got %s", kindName(item))
			continue
		}
		for _, nested := range s.ownKeys(item, path, seen, fn, false) {
			s.mergeKeys(nested, path, seen, fn)
		}
	}
}

// scalar returns the text of the scalar n with ${NAME} references expanded.
// want describes the expected value for the error when n is not a scalar.
func (s *source) scalar(n *yaml.Node, path, want string) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		s.decodeError(n.Line, path, "expected %s, got %s", want, kindName(n))
		return "", false
	}
	v, used, err := expandEnv(n.Value, s.lookup)
	if err != nil {
		s.decodeError(n.Line, path, "%s", err.Error())
		return "", false
	}
	if len(used) > 0 {
		s.env[path] = used
	}
	return v, true
}

func (s *source) decodeInt(n *yaml.Node, v reflect.Value, path string) {
	str, ok := s.scalar(n, path, "an integer")
	if !ok {
		return
	}
	i, err := strconv.ParseInt(strings.TrimSpace(str), 10, 64)
	if err != nil || v.OverflowInt(i) {
		s.decodeError(n.Line, path, "expected an integer, got %s", s.quote(path, str))
		return
	}
	v.SetInt(i)
}

func (s *source) decodeBool(n *yaml.Node, v reflect.Value, path string) {
	str, ok := s.scalar(n, path, "true or false")
	if !ok {
		return
	}
	switch strings.TrimSpace(str) {
	case "true":
		v.SetBool(true)
	case "false":
		v.SetBool(false)
	default:
		s.decodeError(n.Line, path, "expected true or false, got %s", s.quote(path, str))
	}
}

func (s *source) decodeDuration(n *yaml.Node, v reflect.Value, path string) {
	const want = "a duration such as 30s, 5m, 1h30m or 1d"
	str, ok := s.scalar(n, path, want)
	if !ok {
		return
	}
	d, err := ParseDuration(strings.TrimSpace(str))
	if err != nil {
		s.decodeError(n.Line, path, "expected %s, got %s", want, s.quote(path, str))
		return
	}
	v.Set(reflect.ValueOf(d))
}

// resolveAlias follows *alias nodes to the node they name.
func resolveAlias(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// kindName describes what n is, without showing its value.
func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!str":
			return "a string"
		case "!!int", "!!float":
			return "a number"
		case "!!bool":
			return "a boolean"
		default:
			return "a value"
		}
	default:
		return "a document"
	}
}
