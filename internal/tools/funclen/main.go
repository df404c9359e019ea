// Command funclen prints the longest functions in the non-test Go files of
// the package directories it is given, and fails when the longest is over
// a limit. `make vet` runs it on the request and run paths.
//
//	go run ./internal/tools/funclen [-max N] [-top K] DIR...
//
// A function's length is its declaration's lines, from func to the closing
// brace (its doc comment not counted; function literals count towards the
// function they are in). Only the files the go tool would build for this
// platform are read. The output is
//
//	longest: FILE:LINE FUNC N lines
//
// then the top K, one per line, and exit status 1 when N is over -max.
package main

import (
	"flag"
	"fmt"
	"go/ast"
	"go/build"
	"go/parser"
	"go/token"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// fn is one function declaration.
type fn struct {
	file  string
	line  int
	name  string
	lines int
}

func main() {
	max := flag.Int("max", 0, "fail when the longest function has more lines than this (0: never fail)")
	top := flag.Int("top", 5, "how many of the longest functions to list")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: funclen [-max N] [-top K] DIR...")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	fns, err := collect(flag.Args())
	if err != nil {
		fmt.Fprintf(os.Stderr, "funclen: %v\n", err)
		os.Exit(2)
	}
	os.Exit(report(os.Stdout, os.Stderr, fns, *top, *max))
}

// collect reads every function of the packages in dirs.
func collect(dirs []string) ([]fn, error) {
	var fns []fn
	fset := token.NewFileSet()
	for _, dir := range dirs {
		pkg, err := build.ImportDir(dir, 0)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", dir, err)
		}
		files := append(append([]string(nil), pkg.GoFiles...), pkg.CgoFiles...)
		for _, name := range files {
			path := filepath.Join(dir, name)
			f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
			if err != nil {
				return nil, err
			}
			for _, d := range f.Decls {
				fd, ok := d.(*ast.FuncDecl)
				if !ok || fd.Body == nil {
					continue
				}
				start, end := fset.Position(fd.Pos()), fset.Position(fd.End())
				fns = append(fns, fn{file: filepath.ToSlash(path), line: start.Line, name: funcName(fd), lines: end.Line - start.Line + 1})
			}
		}
	}
	return fns, nil
}

// funcName is "Name", or "(T).Name" / "(*T).Name" for a method.
func funcName(fd *ast.FuncDecl) string {
	if fd.Recv == nil || len(fd.Recv.List) == 0 {
		return fd.Name.Name
	}
	return "(" + typeName(fd.Recv.List[0].Type) + ")." + fd.Name.Name
}

func typeName(e ast.Expr) string {
	switch t := e.(type) {
	case *ast.StarExpr:
		return "*" + typeName(t.X)
	case *ast.Ident:
		return t.Name
	case *ast.IndexExpr: // generic receiver T[P]
		return typeName(t.X)
	case *ast.IndexListExpr:
		return typeName(t.X)
	}
	return "?"
}

// report prints the longest function and the top k, and returns the exit
// status: 1 when the longest is over max (max > 0).
func report(out, errs io.Writer, fns []fn, k, max int) int {
	if len(fns) == 0 {
		fmt.Fprintln(errs, "funclen: no functions found")
		return 2
	}
	sort.SliceStable(fns, func(i, j int) bool {
		if fns[i].lines != fns[j].lines {
			return fns[i].lines > fns[j].lines
		}
		return fns[i].file+fns[i].name < fns[j].file+fns[j].name
	})
	l := fns[0]
	fmt.Fprintf(out, "longest: %s:%d %s %d lines\n", l.file, l.line, l.name, l.lines)
	for i := 0; i < k && i < len(fns); i++ {
		f := fns[i]
		fmt.Fprintf(out, "  %d. %s:%d %s %d lines\n", i+1, f.file, f.line, f.name, f.lines)
	}
	if max > 0 && l.lines > max {
		var over []string
		for _, f := range fns {
			if f.lines > max {
				over = append(over, fmt.Sprintf("%s (%d)", f.name, f.lines))
			}
		}
		fmt.Fprintf(errs, "funclen: %d functions over %d lines: %s\n", len(over), max, strings.Join(over, ", "))
		return 1
	}
	return 0
}
