// luahealth runs an Argo CD resource health script the way Argo CD does: in
// gopher-lua (the Lua Argo CD embeds), with only the libraries Argo CD opens for a
// custom health check (package, base, table; no string, io or os), a one-second
// time limit, and the object decoded into Lua tables as Argo CD decodes it.
//
// Usage: luahealth SCRIPT.lua < objects.json   (a JSON array of objects)
// Prints a JSON array with one {"status","message"} or {"error"} per object.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	lua "github.com/yuin/gopher-lua"
)

type result struct {
	Status  string `json:"status,omitempty"`
	Message string `json:"message,omitempty"`
	Error   string `json:"error,omitempty"`
}

// decode mirrors Argo CD's decodeValue: JSON numbers are Lua numbers, objects and
// arrays are tables (arrays 1-based), null is nil.
func decode(l *lua.LState, value interface{}) lua.LValue {
	switch v := value.(type) {
	case bool:
		return lua.LBool(v)
	case float64:
		return lua.LNumber(v)
	case string:
		return lua.LString(v)
	case []interface{}:
		arr := l.CreateTable(len(v), 0)
		for _, item := range v {
			arr.Append(decode(l, item))
		}
		return arr
	case map[string]interface{}:
		tbl := l.CreateTable(0, len(v))
		for key, item := range v {
			tbl.RawSetH(lua.LString(key), decode(l, item))
		}
		return tbl
	}
	return lua.LNil
}

func run(script string, obj map[string]interface{}) result {
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{{lua.LoadLibName, lua.OpenPackage}, {lua.BaseLibName, lua.OpenBase}, {lua.TabLibName, lua.OpenTable}} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			return result{Error: err.Error()}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", decode(l, obj))
	if err := l.DoString(script); err != nil {
		return result{Error: err.Error()}
	}
	ret, ok := l.Get(-1).(*lua.LTable)
	if !ok {
		return result{Error: fmt.Sprintf("expected a table from the script, got %s", l.Get(-1).Type())}
	}
	status, _ := ret.RawGetString("status").(lua.LString)
	message, _ := ret.RawGetString("message").(lua.LString)
	switch string(status) {
	case "Unknown", "Progressing", "Suspended", "Healthy", "Degraded", "Missing":
		return result{Status: string(status), Message: string(message)}
	}
	return result{Status: "Unknown", Message: "Lua returned an invalid health status"}
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: luahealth SCRIPT.lua < objects.json")
		os.Exit(2)
	}
	script, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var objects []map[string]interface{}
	if err := json.NewDecoder(os.Stdin).Decode(&objects); err != nil {
		fmt.Fprintln(os.Stderr, "reading objects:", err)
		os.Exit(2)
	}
	out := make([]result, 0, len(objects))
	for _, obj := range objects {
		out = append(out, run(string(script), obj))
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
