import type { BudgetMessage } from '../shared/messages.js';
import type { HubConfig } from './config.js';

const MIB = 1024 * 1024;

/**
 * The transfer budget the config declares for a device (HubConfig.budgets): its own entry, else
 * its groups' (the smallest of each period where it is in several), else `*`'s; undefined if none.
 */
export function declaredBudget(config: HubConfig, agentId: string): Omit<BudgetMessage[1], 'hlc' | 'epoch'> | undefined {
  const { budgets, access } = config;
  const own = budgets[agentId];
  const groups = Object.keys(access.groups)
    .filter((group) => access.groups[group]!.includes(agentId) && budgets[`group:${group}`] !== undefined)
    .map((group) => budgets[`group:${group}`]!);
  const entries = own ? [own] : groups.length > 0 ? groups : budgets['*'] ? [budgets['*']] : [];
  if (entries.length === 0) return undefined;
  const smallest = (values: Array<number | undefined>): number | undefined => {
    const given = values.filter((v): v is number => v !== undefined);
    return given.length > 0 ? Math.round(Math.min(...given) * MIB) : undefined;
  };
  const d = smallest(entries.map((e) => e.mbPerDay));
  const m = smallest(entries.map((e) => e.mbPerMonth));
  return { ...(d !== undefined && { d }), ...(m !== undefined && { m }) };
}
