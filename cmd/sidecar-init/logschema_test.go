package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// Every log field name has one JSON type wherever the supervisor logs it: a typed log
// pipeline (an Elasticsearch mapping) rejects a field that is an array on one line and a
// number on the next. A review found "daemons" both ways and "after" as a string and an
// array. Read from the source: every zlog.KIND("key", ...) call outside tests.
func TestLogFieldsKeepOneType(t *testing.T) {
	// JSON type of each zlog constructor: Int and Uint64 are both numbers.
	jsonType := map[string]string{
		"String": "string", "Duration": "string", "Int": "number", "Uint64": "number",
		"Bool": "bool", "Strings": "array of strings", "Ints": "array of numbers",
	}
	types := map[string]map[string][]string{} // key -> JSON type -> where
	fset := token.NewFileSet()
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		file, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(file, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) == 0 {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			if pkg, ok := sel.X.(*ast.Ident); !ok || pkg.Name != "zlog" {
				return true
			}
			kind, known := jsonType[sel.Sel.Name]
			lit, isLit := call.Args[0].(*ast.BasicLit)
			if !known || !isLit || lit.Kind != token.STRING {
				return true
			}
			key, _ := strconv.Unquote(lit.Value)
			if types[key] == nil {
				types[key] = map[string][]string{}
			}
			types[key][kind] = append(types[key][kind], fset.Position(call.Pos()).String())
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(types) < 20 {
		t.Fatalf("found only %d field names: is the walk reading the supervisor's source?", len(types))
	}
	for key, kinds := range types {
		if len(kinds) < 2 {
			continue
		}
		var where []string
		for kind, at := range kinds {
			where = append(where, kind+" at "+strings.Join(at, ", "))
		}
		sort.Strings(where)
		t.Errorf("log field %q has %d types:\n  %s", key, len(kinds), strings.Join(where, "\n  "))
	}
}
